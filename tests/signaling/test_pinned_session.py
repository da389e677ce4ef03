"""A client secret's pinned fields hold against the browser: in the offer's session part and in session.update.

Real calls (aiortc on loopback, fake engines with two agents): the server mints a token, the
"browser" places the call with it and tries to change what the token set.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from gateway.agents import EchoAgent
from gateway.agents.registry import AgentRegistry
from gateway.app.application import REGISTRY, create_app
from gateway.config import EventsConfig, GatewayConfig
from gateway.config.loader import ConfigSource, add_config_arguments, load_config
from gateway.protocol.session_settings import PinnedField, SessionSettings
from gateway.voice.engines import Engines
from qa.caller import Caller
from signaling.auth import merge_sessions
from signaling.bound_session import pinned_fields
from signaling.errors import ApiError
from tests.support.fakes import LoudnessVad, ScriptedAsr, ToneTts

SECRETS = "/v1/realtime/client_secrets"
Mint = Callable[[dict[str, Any]], Awaitable[tuple[int, dict[str, Any]]]]


def two_agents() -> Engines:
    return Engines(vad=LoudnessVad(), asr=ScriptedAsr(), tts=ToneTts(),
                   agents=AgentRegistry({"echo": EchoAgent, "webhook": EchoAgent}))


@pytest.fixture
async def server() -> AsyncIterator[TestServer]:
    test_server = TestServer(create_app(GatewayConfig(events=EventsConfig(file="")), engines=two_agents()),
                             host="127.0.0.1")
    await test_server.start_server()
    yield test_server
    await test_server.close()


@pytest.fixture
def mint(server: TestServer) -> Mint:
    async def post(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as http, http.post(server.make_url(SECRETS), json=body) as response:
            return response.status, await response.json()

    return post


@pytest.fixture
async def calls(server: TestServer) -> AsyncIterator[Callable[..., Awaitable[Caller]]]:
    placed: list[Caller] = []

    async def place(token: str, session: dict[str, Any] | None = None) -> Caller:
        caller = Caller(str(server.make_url("")), token=token, session=session)
        placed.append(caller)
        await caller.connect()
        return caller

    yield place
    for caller in placed:
        await caller.hangup()


async def test_the_offer_and_session_update_cannot_change_what_the_token_pinned(
        server: TestServer, mint: Mint, calls: Callable[..., Awaitable[Caller]]) -> None:
    status, body = await mint({"session": {"instructions": "Pinned.", "agent": "webhook"}})
    assert status == 200, body
    assert body["session"]["gateway"]["pinned"] == ["agent", "instructions"]  # the default: what it sets
    caller = await calls(body["value"], {"instructions": "Changed.", "agent": "echo",
                                         "gateway": {"pinned": []},  # cannot unpin
                                         "audio": {"input": {"turn_detection": {"silence_duration_ms": 700}}}})
    session = (await caller.wait_event("session.created", timeout=10))["session"]
    assert (session["instructions"], session["agent"]) == ("Pinned.", "webhook")
    assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 700  # not pinned: applied
    assert session["gateway"]["pinned"] == ["agent", "instructions"]

    for event_id, change, param in (("e1", {"instructions": "Hacked."}, "session.instructions"),
                                    ("e2", {"agent": "echo", "voice": "tone"}, "session.agent")):
        caller.send({"type": "session.update", "event_id": event_id, "session": change})
        error = (await caller.wait_event("error", timeout=5, where=lambda e, i=event_id: e["error"]["event_id"] == i))
        assert (error["error"]["code"], error["error"]["param"]) == ("session_field_pinned", param)
    # The same values again (SDKs resend what they were given), and unpinned fields: accepted.
    caller.send({"type": "session.update", "session": {"instructions": "Pinned.", "gateway": {"pinned": []},
                                                       "audio": {"input": {"turn_detection": {"threshold": 0.6}}}}})
    updated = (await caller.wait_event("session.updated", timeout=5))["session"]
    assert updated["audio"]["input"]["turn_detection"]["threshold"] == 0.6
    assert updated["gateway"]["pinned"] == ["agent", "instructions"]  # pins are never removed
    call = server.app[REGISTRY].get(caller.location.rsplit("/", 1)[1])  # type: ignore[union-attr]
    settings = call.conversation.settings
    assert (settings.instructions, settings.agent) == ("Pinned.", "webhook")
    assert len(caller.events_of("session.updated")) == 1


async def test_a_token_that_pins_nothing_lets_the_browser_change_its_session(
        mint: Mint, calls: Callable[..., Awaitable[Caller]]) -> None:
    status, body = await mint({"session": {"instructions": "Default.", "gateway": {"pinned": []}}})
    assert status == 200 and "gateway" not in body["session"]  # OpenAI's behaviour
    caller = await calls(body["value"], {"instructions": "Changed."})
    assert (await caller.wait_event("session.created", timeout=10))["session"]["instructions"] == "Changed."


async def test_a_token_can_pin_the_voice_and_turn_detection(mint: Mint, calls: Callable[..., Awaitable[Caller]]
                                                           ) -> None:
    status, body = await mint({"session": {"audio": {"input": {"turn_detection": {"silence_duration_ms": 900}}},
                                           "gateway": {"pinned": ["turn_detection", "voice"]}}})
    assert status == 200, body
    caller = await calls(body["value"], {"turn_detection": {"silence_duration_ms": 200}})
    session = (await caller.wait_event("session.created", timeout=10))["session"]
    assert session["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 900
    caller.send({"type": "session.update", "session": {"turn_detection": {"silence_duration_ms": 300}}})
    error = await caller.wait_event("error", timeout=5)
    assert error["error"]["param"] == "session.audio.input.turn_detection"


@pytest.mark.parametrize("pinned", ["agent", ["model"], [1], {"agent": True}])
async def test_a_malformed_pin_list_is_400(mint: Mint, pinned: Any) -> None:
    status, body = await mint({"session": {"agent": "echo", "gateway": {"pinned": pinned}}})
    assert (status, body["error"]["code"]) == (400, "invalid_session")


def test_the_merge_drops_every_place_that_sets_a_pinned_field() -> None:
    token = {"audio": {"output": {"voice": "a"}}, "gateway": {"pinned": ["voice"]}}
    offer: dict[str, Any] = {"voice": "b", "audio": {"output": {"voice": "c", "speed": 2}, "input": {"x": 1}},
             "gateway": {"pinned": []}, "instructions": "free"}
    merged = merge_sessions(token, offer)
    assert merged == {"audio": {"output": {"voice": "a", "speed": 2}, "input": {"x": 1}},
                      "gateway": {"pinned": ["voice"]}, "instructions": "free"}
    assert offer["voice"] == "b" and offer["audio"]["output"]["voice"] == "c"  # the offer's session is not changed
    assert merge_sessions(None, offer) is offer and merge_sessions(token, None) is token
    assert pinned_fields({"instructions": "x", "voice": "y"}) == ["instructions"]
    with pytest.raises(ApiError):
        pinned_fields({"gateway": {"pinned": "instructions"}})


def test_settings_refuse_changes_to_pinned_fields_only() -> None:
    settings = SessionSettings.from_config(GatewayConfig(), ("tone",))
    voices, agents = ("tone",), ("echo", "webhook")
    pinned = settings.updated({"instructions": "P.", "gateway": {"pinned": ["instructions"]}}, voices=voices,
                              agents=agents)
    assert pinned.pinned == {"instructions"} and pinned.instructions == "P."
    with pytest.raises(PinnedField) as refused:
        pinned.updated({"instructions": "Q."}, voices=voices, agents=agents)
    assert refused.value.param == "session.instructions"
    assert pinned.updated({"instructions": "P.", "agent": "webhook"}, voices=voices, agents=agents).agent == "webhook"


def test_the_agents_a_call_may_select_are_one_flag_away() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    config = load_config(ConfigSource.from_args(parser.parse_args(["--set", "agents.allowed=echo"])))
    assert config.agents.enabled(config.session.agent) == ("echo",)
    config = load_config(ConfigSource(env={"VOICE_GATEWAY_AGENTS_ALLOWED": "echo,webhook"},
                                      overrides={"agents.webhook_url": "http://127.0.0.1:9/turn"}))
    assert config.agents.allowed == ("echo", "webhook")
