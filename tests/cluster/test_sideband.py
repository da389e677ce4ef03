"""A sideband in a cluster: attached on one instance to a WebRTC call held by another, relayed to its owner."""

from __future__ import annotations

import time

import aiohttp
import pytest

from gateway.app.keys import REGISTRY
from qa.caller import Caller
from tests.cluster.conftest import API_KEY, MakeInstances, bearer
from tests.support.speech import utterance, word_error_rate
from tests.transports.sdk_caller import SdkCaller, sdk_client

pytestmark = pytest.mark.slow

UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}


async def test_a_sideband_on_another_instance_hears_and_controls_the_call(make_instances: MakeInstances) -> None:
    a, b = await make_instances("a", "b")
    caller = Caller(a.url, token=API_KEY)
    await caller.connect()
    assert caller.location is not None
    call_id = caller.location.rsplit("/", 1)[1]
    try:
        await caller.wait_event("session.created")
        manager = sdk_client(b.url, API_KEY).realtime.connect(call_id=call_id)
        sideband = SdkCaller(await manager.enter())
        try:
            created = await sideband.wait_event("session.created")
            assert created["session"]["id"] == call_id  # a's session, seen through b
            assert not b.server.app[REGISTRY].has_call(call_id)
            clip = utterance("timit_LDC93S1.wav")
            since = time.monotonic()
            await caller.say(clip.audio(), 16_000)
            heard = await sideband.wait_event("conversation.item.input_audio_transcription.completed", since=since,
                                              timeout=60)
            assert word_error_rate(clip.transcript, heard["transcript"]) <= 0.25
            await sideband.wait_event("response.done", since=since, timeout=60)
            since = time.monotonic()
            await sideband.connection.session.update(session={"type": "realtime", "instructions": "from b"})
            updated = await sideband.wait_event("session.updated", since=since)
            assert updated["session"]["instructions"] == "from b"
            seen = await caller.wait_event("session.updated", since=since)  # the caller on a sees b's change
            assert seen["session"]["instructions"] == "from b"
        finally:
            await sideband.close()
        assert a.server.app[REGISTRY].has_call(call_id)  # detaching never ends the call
    finally:
        await caller.hangup()


async def test_a_sideband_for_a_call_no_instance_holds_is_404(make_instances: MakeInstances) -> None:
    _a, b = await make_instances("a", "b")
    async with aiohttp.ClientSession() as http:
        url = b.url + "/v1/realtime?call_id=rtc_00000000000000000000"
        async with http.get(url, headers={**bearer(API_KEY), **UPGRADE}) as refused:
            assert refused.status == 404
            assert (await refused.json())["error"]["code"] == "call_not_found"
