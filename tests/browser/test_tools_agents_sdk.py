"""The official Agents SDK's tool loop in Chromium: a ``RealtimeAgent`` with one ``tool()``.

The page (tools_page.html) runs ``RealtimeSession`` over the SDK's WebRTC transport, only its
``baseUrl`` pointed at the gateway. The gateway's agent is ``openai``, pointed at a scripted Chat
Completions server that decides to call ``get_weather`` and then reads out the tool's result
(tests/agents/chat_script.py). The caller speaks; the tool must run *in the page* with the model's
arguments, its result must be spoken back, the SDK's history must show the call, and every event must
parse with the SDK's own schemas.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestServer

from gateway.voice.engines import Engines
from tests.agents.chat_script import weather_model
from tests.agents.tool_gateway import tool_gateway
from tests.browser.conftest import LaunchBrowser, serve_sdk_page, silence, speech
from tests.gateway.agents.upstream_server import ScriptedUpstream, scripted_upstream

pytestmark = pytest.mark.slow

RESULT = "sunny and twenty one degrees in Paris"


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    async with scripted_upstream(weather_model(prefix="The tool says it is ")) as scripted:
        yield scripted


@pytest.fixture
async def gateway_server(engines: Engines, upstream: ScriptedUpstream) -> AsyncIterator[TestServer]:
    async with tool_gateway(engines, upstream) as server:
        yield server


@pytest.fixture
async def tools_page_url() -> AsyncIterator[str]:
    async with serve_sdk_page("tools_page.html") as url:
        yield url


async def test_an_agents_sdk_tool_runs_in_the_page_and_its_result_is_spoken(
    launch_browser: LaunchBrowser, gateway_url: str, tools_page_url: str, upstream: ScriptedUpstream
) -> None:
    browser = await launch_browser([silence(2.5), speech("ps_cards_001.wav"), silence(12)])
    page = await browser.new_page(f"{tools_page_url}?gateway={gateway_url}")
    await page.wait_for("typeof window.startSdk === 'function'", within=20)
    await page.evaluate("startSdk()")
    state = await page.wait_for("toolTest.status !== 'connecting' && toolTest", within=15)
    assert state["status"] == "connected", state["error"]

    # The tool ran in the page, with the arguments the model chose.
    state = await page.wait_for("toolTest.toolCalls.length > 0 && toolTest", within=40)
    assert state["toolCalls"] == [{"city": "Paris"}]
    # The SDK told the gateway the tool exists (its own session.update), and the model was offered it.
    first = upstream.exchanges[0].body
    assert [tool["function"]["name"] for tool in first["tools"]] == ["get_weather"]
    assert first["tools"][0]["function"]["parameters"]["required"] == ["city"]

    # Its result went back (function_call_output + response.create), and the answer is heard.
    state = await page.wait_for("toolTest.turnsDone.length >= 2 && toolTest", within=30)
    second = upstream.exchanges[1].body["messages"]
    assert second[-1]["role"] == "tool" and second[-1]["content"] == RESULT
    spoken = next(o for o in state["turnsDone"][1]["output"] if o["type"] == "message")["content"][0]["transcript"]
    assert RESULT in spoken, spoken
    await page.wait_for("toolTest.audibleAfterToolMs >= 800", within=15)

    # The SDK's history shows the call, completed, with its output.
    state = await page.evaluate("toolTest")
    calls = [item for item in state["history"] if item["type"] == "function_call"]
    assert len(calls) == 1, state["history"]
    assert calls[0]["name"] == "get_weather" and json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    assert calls[0]["status"] == "completed" and calls[0]["output"] == RESULT
    roles = [item.get("role") for item in state["history"] if item["type"] == "message"]
    assert roles[0] == "user" and roles[-1] == "assistant", state["history"]

    # Every OpenAI event parsed with the SDK's schemas; nothing was refused; nothing was logged as an error.
    generic = set(state["wire"]) - set(state["typed"])
    assert all(kind.startswith("gateway.") for kind in generic), sorted(generic)
    assert state["errors"] == [], json.dumps(state["errors"])
    assert state["consoleErrors"] == [], json.dumps(state["consoleErrors"])
    await page.evaluate("stopSdk()")
