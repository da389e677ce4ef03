"""Admission control and calls placed on worker processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import GatewayConfig, LimitsConfig
from qa.caller import Caller, CallFailed
from tests.support.calls import trimmed
from tests.support.ops import GatewayProcess, get_json
from tests.support.speech import utterance, word_error_rate

API_KEY = "sk-front-test-key-0123456789"
LONG_TEXT = ("This reply is long on purpose, so that there is time to talk over it, and it keeps going for a "
             "good while, clause after clause, until somebody interrupts it.")


@pytest.fixture
def gateway_config() -> GatewayConfig:
    return GatewayConfig(limits=LimitsConfig(max_calls=2, max_calls_per_client=2))  # one address fills it here


async def test_calls_beyond_capacity_are_refused_fast_and_admitted_again_later(gateway_url: str) -> None:
    first, second = Caller(gateway_url), Caller(gateway_url)
    await first.connect()
    await second.connect()
    third = Caller(gateway_url)
    with pytest.raises(CallFailed) as refused:
        await third.connect()
    assert refused.value.status == 503 and refused.value.code == "capacity"
    status, body = await get_json(gateway_url, "/readyz")
    assert status == 503 and body["reason"] == "at_capacity"
    await first.hangup()
    again = Caller(gateway_url)
    await again.connect()  # a slot was freed
    assert (await get_json(gateway_url, "/readyz"))[0] == 503
    await again.hangup()
    await second.hangup()
    status, body = await get_json(gateway_url, "/readyz")
    assert status == 200 and body["active_calls"] == 0


@pytest.fixture
def front(tmp_path: Path) -> Iterator[GatewayProcess]:
    process = GatewayProcess.serve(tmp_path, "--workers", "2", "--events-file", "",
                                   env={"VOICE_GATEWAY_AUTH_API_KEYS": API_KEY})
    try:
        yield process
    finally:
        process.kill()


async def converse(caller: Caller) -> None:
    clip = utterance("timit_LDC93S1.wav")
    _, end = await caller.say(clip.audio(), 16_000)
    completed = await caller.wait_event("conversation.item.input_audio_transcription.completed", since=end - 1)
    assert word_error_rate(clip.transcript, completed["transcript"]) <= 0.25
    done = await caller.wait_event("response.done", since=end, timeout=30)
    assert done["response"]["status"] == "completed"
    assert caller.received.audible_seconds(since=end) >= 1.0


async def barge_in(caller: Caller) -> None:
    caller.send({"type": "conversation.item.create", "item": {
        "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": LONG_TEXT}]}})
    caller.send({"type": "response.create"})
    started = await caller.wait_event("output_audio_buffer.started", timeout=30,
                                      where=lambda e: e["response_id"] != _last_response(caller))
    await asyncio.sleep(1.0)
    onset, _ = await caller.say(trimmed(utterance("ps_goforward.wav").audio()), 16_000)
    done = await caller.wait_event("response.done", since=onset, timeout=30,
                                   where=lambda e: e["response"]["id"] == started["response_id"])
    assert done["response"]["status"] == "cancelled"
    truncated = await caller.wait_event("conversation.item.truncated", since=onset)
    assert truncated["audio_end_ms"] >= 800


def _last_response(caller: Caller) -> str | None:
    done = caller.events_of("response.done")
    return done[-1]["response"]["id"] if done else None


async def test_calls_on_worker_processes_behave_like_single_process_calls(front: GatewayProcess) -> None:
    await front.wait_ready(within=120)
    for _ in range(600):  # ready as soon as one worker is; wait for both
        status, body = await get_json(front.url, "/readyz")
        if [w["accepting"] for w in body["workers"]] == [True, True]:  # type: ignore[index, union-attr]
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError(f"workers not ready: {body}")
    with pytest.raises(CallFailed) as refused:  # the front enforces the API keys ...
        await Caller(front.url).connect()
    assert refused.value.status == 401
    callers = [Caller(front.url, token=API_KEY), Caller(front.url, token=API_KEY)]  # ... and workers trust it
    for caller in callers:
        await caller.connect()
        await caller.wait_event("session.created")
    await asyncio.sleep(1.0)  # the front polls the workers' load
    status, body = await get_json(front.url, "/readyz")
    assert sorted(w["active_calls"] for w in body["workers"]) == [1, 1]  # type: ignore[index, union-attr]
    # Each worker's admission reports its headroom; the front routes by it (tests/gateway/test_admission.py).
    assert all(isinstance(w["headroom_calls"], int) for w in body["workers"])  # type: ignore[index, union-attr]
    await asyncio.gather(*(converse(caller) for caller in callers))
    await barge_in(callers[0])
    for caller in callers:
        await caller.hangup()
    await asyncio.sleep(1.0)
    status, body = await get_json(front.url, "/readyz")
    assert status == 200 and body["active_calls"] == 0
    front.signal()
    assert await front.wait_exit(within=60) == 0


def test_busy_cpus_refuse_calls_only_when_the_limit_is_set(tmp_path: Path) -> None:
    from gateway.session.load import LoadMonitor, read_proc_stat

    readings = iter([(100.0, 1000.0), (290.0, 1200.0), (480.0, 1400.0)])  # 95 % busy after the first
    monitor = LoadMonitor(LimitsConfig(max_cpu_percent=90), cpu_reader=lambda: next(readings))
    for at in (0.0, 0.5, 1.0):
        monitor.sample_cpu(at)
    assert monitor.cpu_percent == pytest.approx(95.0)
    assert monitor.overload_reason(None) == "CPUs 95 % busy"
    assert LoadMonitor(LimitsConfig()).overload_reason(None) is None  # off by default

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n")
    assert read_proc_stat(stat) == (150.0, 1000.0)
    assert read_proc_stat(tmp_path / "missing") is None
