"""Sideband control of a WebRTC call: the app's server attaches with the official ``openai`` SDK.

The browser's side is the aiortc caller the other end-to-end tests use; the server's side is
``client.realtime.connect(call_id=…)`` with the server key. Real engines, real speech.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator

import pytest

from gateway.config import AuthConfig, EventsConfig, GatewayConfig
from qa.caller import Caller
from tests.support.speech import utterance, word_error_rate
from tests.transports.sdk_caller import SdkCaller, sdk_client

pytestmark = pytest.mark.slow

KEY = "sk-sideband-test-key-0123"


@pytest.fixture
def gateway_config() -> GatewayConfig:
    return dataclasses.replace(GatewayConfig(events=EventsConfig(file="")), auth=AuthConfig(api_keys=(KEY,)))


@pytest.fixture
async def webrtc(gateway_url: str) -> AsyncIterator[Caller]:
    call = Caller(gateway_url, token=KEY)
    await call.connect()
    try:
        yield call
    finally:
        await call.hangup()


async def attach(gateway_url: str, call_id: str, key: str = KEY) -> tuple[SdkCaller, object]:
    manager = sdk_client(gateway_url, key).realtime.connect(call_id=call_id)
    connection = await manager.enter()
    return SdkCaller(connection), manager


def call_id_of(caller: Caller) -> str:
    assert caller.location is not None
    return caller.location.rsplit("/", 1)[-1]


async def test_a_sideband_hears_the_call_and_controls_it(gateway_url: str, webrtc: Caller) -> None:
    await webrtc.wait_event("session.created")
    sideband, _ = await attach(gateway_url, call_id_of(webrtc))
    try:
        created = await sideband.wait_event("session.created")
        assert created["session"]["id"] == call_id_of(webrtc)
        clip = utterance("ps_goforward.wav")
        since = time.monotonic()
        await webrtc.say(clip.audio(), 16_000)
        completed = await sideband.wait_event("conversation.item.input_audio_transcription.completed", since=since)
        assert word_error_rate(clip.transcript, completed["transcript"]) <= 0.25
        done = await sideband.wait_event("response.done", since=since, timeout=60)
        assert done["response"]["status"] == "completed"
        # The server changes the session: the browser sees it too.
        await sideband.connection.session.update(session={"type": "realtime", "instructions": "from the server"})
        updated = await webrtc.wait_event("session.updated", since=since)
        assert updated["session"]["instructions"] == "from the server"
        await sideband.wait_event("session.updated", since=since)
        # The server asks for a reply: the call speaks it, both hear its events.
        asked = time.monotonic()
        await sideband.connection.response.create()
        spoken = await webrtc.wait_event("response.done", since=asked, timeout=60)
        assert spoken["response"]["status"] == "completed"
        await sideband.wait_event("response.done", since=asked, timeout=10)
    finally:
        await sideband.close()
    # Detaching never ends the call.
    await asyncio.sleep(0.5)
    webrtc.send({"type": "session.update", "session": {"instructions": "still here"}})
    assert (await webrtc.wait_event("session.updated", since=time.monotonic() - 0.1))["session"]["instructions"] \
        == "still here"


async def test_several_sidebands_and_the_refused_ones(gateway_url: str, webrtc: Caller) -> None:
    await webrtc.wait_event("session.created")
    call_id = call_id_of(webrtc)
    first, _ = await attach(gateway_url, call_id)
    second, _ = await attach(gateway_url, call_id)
    try:
        for sideband in (first, second):
            await sideband.wait_event("session.created")
        since = time.monotonic()
        webrtc.send({"type": "session.update", "session": {"instructions": "both hear this"}})
        for sideband in (first, second):
            event = await sideband.wait_event("session.updated", since=since)
            assert event["session"]["instructions"] == "both hear this"
        for bad_call, key in ((call_id, "sk-not-the-key-0000000"), ("rtc_00000000000000000000", KEY)):
            manager = sdk_client(gateway_url, key).realtime.connect(call_id=bad_call)
            with pytest.raises(Exception) as refused:
                await manager.enter()
            assert "401" in str(refused.value) or "404" in str(refused.value)
    finally:
        await first.close()
        await second.close()
