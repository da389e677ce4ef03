"""The tool loop with the tools on the app's server: a sideband (the official ``openai`` SDK,
``realtime.connect(call_id=…)`` with the server key) declares the tool, sees the call, and sends the
result; the caller (aiortc over WebRTC, real engines) hears the answer built from it. The browser never
holds the tool or its secrets."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from gateway.voice.engines import Engines
from qa.caller import Caller
from tests.agents.chat_script import WEATHER_TOOL, weather_model
from tests.agents.tool_gateway import tool_gateway
from tests.gateway.agents.upstream_server import ScriptedUpstream, scripted_upstream
from tests.support.calls import hear
from tests.support.speech import utterance
from tests.transports.sdk_caller import SdkCaller, sdk_client

pytestmark = pytest.mark.slow

KEY = "sk-sideband-tools-key-0123"
RESULT = "sunny and twenty one degrees"


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    async with scripted_upstream(weather_model()) as scripted:
        yield scripted


@pytest.fixture
async def gateway_server(engines: Engines, upstream: ScriptedUpstream) -> AsyncIterator[TestServer]:
    async with tool_gateway(engines, upstream, api_keys=(KEY,)) as server:
        yield server


@pytest.fixture
async def webrtc(gateway_url: str) -> AsyncIterator[Caller]:
    call = Caller(gateway_url, token=KEY)
    await call.connect()
    try:
        yield call
    finally:
        await call.hangup()


async def test_a_sideband_runs_the_tool_and_the_caller_hears_its_result(gateway_url: str, webrtc: Caller,
                                                                        upstream: ScriptedUpstream) -> None:
    await webrtc.wait_event("session.created")
    assert webrtc.location is not None
    call_id = webrtc.location.rsplit("/", 1)[-1]
    connection = await sdk_client(gateway_url, KEY).realtime.connect(call_id=call_id).enter()
    sideband = SdkCaller(connection)
    try:
        await sideband.wait_event("session.created")
        await connection.session.update(session={"type": "realtime", "tools": [WEATHER_TOOL], "tool_choice": "auto"})
        updated = await webrtc.wait_event("session.updated")  # the browser sees the server's tools
        assert [tool["name"] for tool in updated["session"]["tools"]] == ["get_weather"]

        _, speech_end = await webrtc.say(utterance("ps_cards_001.wav").audio(), 16_000)
        called = await sideband.wait_event("response.output_item.done", since=speech_end - 5, timeout=40,
                                           where=lambda e: e["item"]["type"] == "function_call")
        item = called["item"]
        assert item["status"] == "completed" and json.loads(item["arguments"]) == {"city": "Paris"}
        first = await sideband.wait_event("response.done", since=speech_end - 5, timeout=20)

        answered = time.monotonic()
        await connection.conversation.item.create(
            item={"type": "function_call_output", "call_id": item["call_id"], "output": RESULT})
        await connection.response.create()
        # (The data channel may deliver the first response.done after the sideband's socket did.)
        done = await webrtc.wait_event("response.done", timeout=40,
                                       where=lambda e: e["response"]["id"] != first["response"]["id"])
        assert done["response"]["status"] == "completed"
        assert RESULT in done["response"]["output"][0]["content"][0]["transcript"]
        await hear(webrtc, 1.0, since=answered)
        assert upstream.exchanges[1].body["messages"][-1] == {
            "role": "tool", "tool_call_id": item["call_id"], "content": RESULT}
        # A result for a call that does not exist is refused on the sideband; the call goes on.
        bad_at = time.monotonic()
        await connection.conversation.item.create(
            item={"type": "function_call_output", "call_id": "call_nobody", "output": "x"})
        error = await sideband.wait_event("error", since=bad_at, timeout=10)
        assert error["error"]["code"] == "unknown_call_id"
        assert {e["error"]["code"] for e in webrtc.events_of("error")} <= {"unknown_call_id"}
        webrtc.send({"type": "session.update", "session": {"instructions": "still here"}})
        still = await webrtc.wait_event("session.updated", since=bad_at, timeout=10,
                                        where=lambda e: e["session"]["instructions"] == "still here")
        assert still["session"]["tools"][0]["name"] == "get_weather"
    finally:
        await sideband.close()
