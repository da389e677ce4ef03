"""The tool loop over WebRTC (aiortc caller, real engines): the caller asks, the ``openai`` agent's model
(a scripted Chat Completions server that decides to call ``get_weather``) calls the tool, the client runs
it and sends the result on the data channel, and the gateway speaks the model's answer built from it."""

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

pytestmark = pytest.mark.slow

RESULT = "sunny and twenty one degrees"


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    async with scripted_upstream(weather_model()) as scripted:
        yield scripted


@pytest.fixture
async def gateway_server(engines: Engines, upstream: ScriptedUpstream) -> AsyncIterator[TestServer]:
    async with tool_gateway(engines, upstream) as server:
        yield server


async def test_a_spoken_question_calls_the_tool_and_its_result_is_spoken(caller: Caller,
                                                                          upstream: ScriptedUpstream) -> None:
    await caller.wait_event("session.created")
    caller.send({"type": "session.update", "session": {"tools": [WEATHER_TOOL], "tool_choice": "auto"}})
    updated = await caller.wait_event("session.updated")
    assert updated["session"]["tools"] == [WEATHER_TOOL]

    _, speech_end = await caller.say(utterance("ps_cards_001.wav").audio(), 16_000)
    called = await caller.wait_event("response.output_item.done", since=speech_end, timeout=30,
                                     where=lambda e: e["item"]["type"] == "function_call")
    item = called["item"]
    assert item["status"] == "completed" and item["name"] == "get_weather"
    assert json.loads(item["arguments"]) == {"city": "Paris"}
    first = await caller.wait_event("response.done", since=speech_end, timeout=30)
    assert [o["type"] for o in first["response"]["output"]] == ["function_call"]

    answered_at = time.monotonic()
    caller.send({"type": "conversation.item.create",
                 "item": {"type": "function_call_output", "call_id": item["call_id"], "output": RESULT}})
    caller.send({"type": "response.create"})
    done = await caller.wait_event("response.done", since=answered_at, timeout=30)
    assert done["response"]["status"] == "completed"
    transcript = done["response"]["output"][0]["content"][0]["transcript"]
    assert RESULT in transcript
    await hear(caller, 1.0, since=answered_at)  # the answer was heard on the audio track
    second = upstream.exchanges[1].body["messages"]
    assert second[-1] == {"role": "tool", "tool_call_id": item["call_id"], "content": RESULT}
    assert [e for e in caller.events_of("error")] == []
