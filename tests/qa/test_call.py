"""``voice-gateway call`` against a real in-process gateway, with real speech and the real models."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app.application import create_app
from gateway.config import AuthConfig, GatewayConfig, LimitsConfig
from gateway.voice.engines import Engines
from qa.call_cmd import CallOptions, format_report, run_call
from qa.caller import Caller
from qa.netem import NetworkImpairment
from tests.support.calls import without_load_shedding
from tests.support.speech import REPO, SPEECH_DIR, utterance, word_error_rate

pytestmark = pytest.mark.slow

# Clips whose audible end is where speech ends: a quiet tail (ps_goforward.wav ends in 400 ms of breath
# within 30 dB of its peak) counts as speech to the caller but not to the gateway's VAD, lowering the overhead.
SUIT = str(SPEECH_DIR / "timit_LDC93S1.wav")
CARDS = str(SPEECH_DIR / "ps_cards_005.wav")  # its reply is long enough to talk over


def check_turn(turn: dict, file: str) -> None:
    clip = utterance(Path(file).name)
    assert turn["error"] is None, turn
    assert word_error_rate(clip.transcript, turn["transcript"]) <= 0.25, turn["transcript"]
    assert turn["wer"] is not None and turn["wer"] <= 0.25  # the manifest beside the file gives the reference
    assert turn["reply"].startswith("You said:")
    # The caller's overhead is the gateway's own (its first packet after its end of speech, less the silence) plus
    # the way there and back: 50-220 ms measured on loopback with both cores busy, however late the reply came.
    first_packet = turn["gateway"]["stages_ms"]["first_packet_sent"]
    assert first_packet is not None and turn["overhead_ms"] > -200, turn
    assert -300 < turn["overhead_ms"] - (first_packet - turn["silence_ms"]) < 750, turn


async def test_call_reports_transcripts_overhead_and_records_the_reply(gateway_url: str, tmp_path: Path) -> None:
    record = tmp_path / "heard.wav"
    report = await run_call(CallOptions(gateway_url, (SUIT, CARDS), record=str(record)))
    assert report.ok, format_report(report)
    assert report.silence_ms == 500 and report.call_id and report.call_id.startswith("rtc_")
    assert [t["clip"] for t in report.turns] == ["timit_LDC93S1.wav", "ps_cards_005.wav"]
    for turn, file in zip(report.turns, (SUIT, CARDS), strict=True):
        check_turn(turn, file)
        assert turn["reply_status"] == "completed" and not turn["barge_in"]
    with wave.open(str(record)) as heard:
        assert (heard.getframerate(), heard.getnchannels()) == (48_000, 1)
        pcm = np.frombuffer(heard.readframes(heard.getnframes()), np.int16)
    assert len(pcm) / 48_000 >= report.duration_s - 2 and np.abs(pcm).max() > 3000
    text = format_report(report)
    print(text)
    assert "overhead" in text and "result: OK" in text
    for turn in report.turns:  # what was heard and said, whatever the recogniser made of it ("wash water"/"wash for")
        assert json.dumps(turn["transcript"]) in text and json.dumps(turn["reply"]) in text


async def test_barge_in_is_measured_from_the_audio(gateway_url: str) -> None:
    report = await run_call(CallOptions(gateway_url, (CARDS, SUIT), barge_in_after_ms=700))
    assert report.ok, format_report(report)
    print(format_report(report))
    first, second = report.turns
    check_turn(first, CARDS)
    check_turn(second, SUIT)
    assert first["reply_status"] == "cancelled"  # cut short: what was played
    assert second["barge_in"] and second["interrupted"]
    assert 0 < second["barge_in_stop_ms"] < 1500, second
    # The reply pauses at once (barge_in_stop_ms, measured in the audio); output_audio_buffer.cleared comes once the
    # words of the speech over it make it a real interruption (false interruptions: gateway/voice/interruptions.py).
    assert 0 < second["cleared_event_ms"] < 4000, second
    assert first["barge_in_stop_ms"] is None and second["reply_status"] == "completed"


@pytest.fixture
def gateway_config() -> GatewayConfig:
    return GatewayConfig(limits=LimitsConfig(max_calls=1))


async def test_a_refused_call_reports_the_servers_error(gateway_url: str, caller: Caller) -> None:
    # ``caller`` holds the only slot (limits.max_calls = 1).
    report = await run_call(CallOptions(gateway_url, (SUIT,)))
    assert not report.ok and report.turns == []
    assert report.error is not None and report.error["status"] == 503 and report.error["code"] == "capacity"
    assert "at capacity" in format_report(report)


TOKEN = "qa-test-key-0123456789"


@pytest.fixture
async def token_gateway_url(engines: Engines) -> AsyncIterator[tuple[str, list[str]]]:
    """A gateway with an API key (``auth.api_keys``); lists the requests that got past its auth."""
    authorized: list[str] = []
    app = create_app(without_load_shedding(GatewayConfig(auth=AuthConfig(api_keys=(TOKEN,)))), engines=engines)

    @web.middleware
    async def record(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.path.startswith("/v1/"):
            authorized.append(request.method)
        return await handler(request)

    app.middlewares.append(record)  # innermost: it sees only what the auth middleware let through
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/"), authorized
    finally:
        await server.close()


async def test_token_and_an_impaired_network(token_gateway_url: tuple[str, list[str]]) -> None:
    url, authorized = token_gateway_url
    refused = await run_call(CallOptions(url, (SUIT,), token="wrong"))
    assert refused.error is not None and refused.error["status"] == 401 and refused.error["message"]
    assert refused.error["message"] in format_report(refused)

    network = NetworkImpairment(delay_ms=60, jitter_ms=10, loss=0.03, seed=1)
    report = await run_call(CallOptions(url, (SUIT,), token=TOKEN, network=network))
    assert report.ok, format_report(report)
    check_turn(report.turns[0], SUIT)
    assert report.turns[0]["overhead_ms"] > 100  # 60 ms each way, on top of the gateway's own overhead
    assert authorized == ["POST", "DELETE"]
    assert report.network is not None
    for direction in ("send", "receive"):
        stats = report.network[direction]
        assert stats["media_packets"] > 100 and 0 < stats["media_dropped"] < stats["media_packets"] * 0.1
    assert "media loss 3.0%" in format_report(report)


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, cwd=REPO, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_the_cli_reports_json_and_exits_non_zero_when_refused(gateway_url: str) -> None:
    code, out, err = await run_cli("call", gateway_url, "--play", SUIT, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["ok"] and report["summary"]["overhead_ms"]["count"] == 1
    check_turn(report["turns"][0], SUIT)

    code, out, err = await run_cli("call", gateway_url + "/no/such/path", "--play", SUIT)
    assert code == 1
    assert "404" in err and "Not Found" in err, err
