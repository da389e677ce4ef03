"""Two gateways in one test: the second uses the first's gRPC speech services as its ASR and TTS.

A real call over aiortc to the second: its transcript comes from the first's Whisper, its reply from the
first's Piper. Then the first goes away mid-call: the next turn gets an ``error`` event (``asr_failed``),
and the call goes on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from engines.remote import RemoteRecognizer
from gateway.app.application import REGISTRY, create_app
from gateway.config import EngineConfig, EventsConfig, GatewayConfig, ServerConfig
from gateway.voice.engines import Engines
from qa.caller import Caller
from tests.speech.conftest import API_KEY, speech_config, start_gateway
from tests.support.calls import hear, silence, without_load_shedding
from tests.support.speech import utterance, word_error_rate


def remote_config(grpc_port: int) -> GatewayConfig:
    target = f"grpc://127.0.0.1:{grpc_port}"
    return without_load_shedding(GatewayConfig(
        events=EventsConfig(file=""), server=ServerConfig(grpc_port=0),
        engines=EngineConfig(remote_asr=target, remote_tts=target, remote_api_key=API_KEY, remote_timeout_seconds=5)))


async def _ready(url: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while True:
            async with http.get(url + "/readyz") as response:
                if response.status == 200:
                    return
            assert time.monotonic() < deadline, "the gateway with remote engines never got ready"
            await asyncio.sleep(0.2)


@pytest.mark.slow
async def test_a_call_on_remote_engines_survives_losing_them(engines: Engines) -> None:
    first = await start_gateway(speech_config(), engines)
    second = TestServer(create_app(remote_config(first.grpc_port)), host="127.0.0.1")
    await second.start_server()
    url = str(second.make_url("")).rstrip("/")
    caller = Caller(url)
    try:
        await _ready(url)
        loaded = second.app[REGISTRY].engines
        assert loaded is not None and loaded.tts.voices == engines.tts.voices  # read from the remote
        assert isinstance(loaded.asr, RemoteRecognizer)
        await caller.connect()
        clip = utterance("ps_goforward.wav")
        sent = time.monotonic()
        await caller.say(clip.audio(), 16_000)
        await caller.say(silence(1.0), 16_000)
        done = await caller.wait_event("conversation.item.input_audio_transcription.completed", since=sent)
        assert word_error_rate(clip.transcript, done["transcript"]) <= 0.25, done["transcript"]
        await hear(caller, 0.8, since=sent)  # the echo agent's reply, synthesised by the remote Piper

        await first.server.close()  # the remote engines go away mid-call
        lost = time.monotonic()
        await caller.say(utterance("ps_cards_003.wav").audio(), 16_000)
        await caller.say(silence(1.0), 16_000)
        error = await caller.wait_event("error", since=lost, where=lambda e: e["error"]["code"] == "asr_failed")
        assert "remote" in error["error"]["message"]
        # the call survives: it still answers on its events channel
        updated_at = time.monotonic()
        caller.send({"type": "session.update", "session": {"type": "realtime", "instructions": "Still here."}})
        await caller.wait_event("session.updated", since=updated_at)
        assert caller.pc.connectionState == "connected"
    finally:
        await caller.hangup()
        await second.close()
        await first.server.close()


def test_remote_urls_are_validated() -> None:
    from gateway.config import ConfigError

    for url in ("http://host:1", "grpc://host", "host:50051", "grpc://:50051"):
        with pytest.raises(ConfigError):
            EngineConfig(remote_asr=url)
    assert dataclasses.replace(EngineConfig(), remote_tts="grpcs://asr.internal:443").remote_tts
