"""The tool loop over the Realtime WebSocket with the official ``openai`` Python SDK (``realtime.connect``,
only the base URL changed): the SDK declares the tool, reads the call it streams, sends the result, and
receives the answer — as audio events, and, asked for ``output_modalities: ["text"]``, as text events."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from gateway.voice.engines import Engines
from tests.agents.chat_script import WEATHER_TOOL, weather_model
from tests.agents.tool_gateway import tool_gateway
from tests.gateway.agents.upstream_server import ScriptedUpstream, scripted_upstream
from tests.transports.sdk_caller import sdk_call

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


async def test_the_openai_sdk_runs_the_tool_loop_over_the_realtime_websocket(gateway_url: str) -> None:
    async with sdk_call(gateway_url) as caller:
        connection = caller.connection
        await caller.wait_event("session.created")
        await connection.session.update(session={"type": "realtime", "tools": [WEATHER_TOOL]})
        await caller.wait_event("session.updated")

        asked = time.monotonic()
        await connection.conversation.item.create(item={"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "What is the weather in Paris?"}]})
        await connection.response.create()
        called = await caller.wait_event("response.output_item.done", since=asked, timeout=30,
                                         where=lambda e: e["item"]["type"] == "function_call")
        item = called["item"]
        assert item["status"] == "completed" and json.loads(item["arguments"]) == {"city": "Paris"}
        deltas = [e["delta"] for e in caller.of("response.function_call_arguments.delta", since=asked)]
        assert "".join(deltas) == item["arguments"]
        first = await caller.wait_event("response.done", since=asked)
        assert [o["type"] for o in first["response"]["output"]] == ["function_call"]

        answered = time.monotonic()
        await connection.conversation.item.create(
            item={"type": "function_call_output", "call_id": item["call_id"], "output": RESULT})
        await connection.response.create()
        done = await caller.wait_event("response.done", since=answered, timeout=60)
        assert RESULT in done["response"]["output"][0]["content"][0]["transcript"]
        assert caller.reply_audio(done["response"]["id"])  # spoken: audio in events on this transport

        # The same result read out again as an out-of-band text response over chosen input: text events,
        # no audio, nothing added to the conversation.
        texted = time.monotonic()
        await connection.response.create(response={
            "conversation": "none", "output_modalities": ["text"], "metadata": {"purpose": "recap"},
            "input": [{"type": "item_reference", "id": item["id"]},
                      {"type": "function_call_output", "call_id": item["call_id"], "output": RESULT}]})
        done = await caller.wait_event("response.done", since=texted, timeout=30)
        text = "".join(e["delta"] for e in caller.of("response.output_text.delta", since=texted))
        assert RESULT in text and done["response"]["output"][0]["content"][0]["text"] == text
        assert done["response"]["conversation_id"] is None and done["response"]["metadata"] == {"purpose": "recap"}
        assert not caller.reply_audio(done["response"]["id"]) and caller.of("conversation.item.added", texted) == []
        assert caller.of("error") == []
