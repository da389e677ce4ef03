"""Tools bound by the app's server: ``POST /v1/realtime/client_secrets`` with a session that has tools
(and pins them), then a call placed with the ``ek_`` token (aiortc). The call starts with the server's
tools; the browser cannot replace pinned tools, and may resend them unchanged (SDKs resend their config)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.config import AuthConfig, EventsConfig, GatewayConfig
from qa.caller import Caller
from tests.agents.chat_script import WEATHER_TOOL

pytestmark = pytest.mark.slow

KEY = "sk-tools-secret-key-0123"


@pytest.fixture
def gateway_config() -> GatewayConfig:
    return dataclasses.replace(GatewayConfig(events=EventsConfig(file="")), auth=AuthConfig(api_keys=(KEY,)))


async def mint(gateway_url: str, session: dict[str, object]) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(gateway_url + "/v1/realtime/client_secrets", json={"session": session},
                             headers={"Authorization": f"Bearer {KEY}"}) as response:
            return response.status, await response.json()


@pytest.fixture
async def bound_call(gateway_url: str) -> AsyncIterator[Caller]:
    status, body = await mint(gateway_url, {"tools": [WEATHER_TOOL], "tool_choice": "required",
                                            "gateway": {"pinned": ["tools"]}})
    assert status == 200, body
    call = Caller(gateway_url, token=str(body["value"]))
    await call.connect()
    try:
        yield call
    finally:
        await call.hangup()


async def test_a_client_secret_binds_and_pins_the_calls_tools(gateway_url: str, bound_call: Caller) -> None:
    created = (await bound_call.wait_event("session.created"))["session"]
    assert created["tools"] == [WEATHER_TOOL] and created["tool_choice"] == "required"
    assert created["gateway"]["pinned"] == ["tools"]
    bound_call.send({"type": "session.update", "event_id": "swap", "session": {"tools": []}})
    error = await bound_call.wait_event("error")
    assert (error["error"]["code"], error["error"]["param"], error["error"]["event_id"]) == (
        "session_field_pinned", "session.tools", "swap")
    bound_call.send({"type": "session.update", "session": {"tools": [WEATHER_TOOL], "tool_choice": "auto"}})
    updated = await bound_call.wait_event("session.updated")  # the same tools again: accepted
    assert updated["session"]["tools"] == [WEATHER_TOOL] and updated["session"]["tool_choice"] == "auto"


async def test_a_client_secret_with_bad_tools_is_refused(gateway_url: str) -> None:
    status, body = await mint(gateway_url, {"tools": [{"type": "function", "name": "no spaces allowed"}]})
    assert status == 400, body
    error = body["error"]
    assert isinstance(error, dict) and error["code"] in ("invalid_value", "invalid_session")
    assert "session.tools[0].name" in str(error["message"])
