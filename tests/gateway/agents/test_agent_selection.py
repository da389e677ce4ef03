"""Which agents a server offers, how a call picks one, and that callers never pick endpoints."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.agents.chat import ChatCompletionsAgent, ChatEndpoint
from gateway.agents.webhook import WebhookAgent
from gateway.app.engines import default_agents
from gateway.config import AgentsConfig, ConfigError, GatewayConfig, SessionDefaults
from gateway.config.loader import ConfigSource, load_config, to_dict
from qa.caller import Caller, CallFailed
from tests.gateway.agents.upstream_server import ScriptedUpstream, stream

WEBHOOK = "http://127.0.0.1:9/turn"


def test_by_default_only_echo_is_offered() -> None:
    assert GatewayConfig().agents.enabled("echo") == ("echo",)


def test_configured_agents_are_offered_unless_allowed_says_otherwise() -> None:
    agents = AgentsConfig(openai_model="gpt-4o-mini", webhook_url=WEBHOOK)
    assert agents.enabled("echo") == ("echo", "openai", "webhook")
    restricted = AgentsConfig(openai_model="gpt-4o-mini", webhook_url=WEBHOOK, allowed=("webhook",))
    assert restricted.enabled("echo") == ("echo", "webhook")  # the server's default is always allowed
    assert restricted.enabled("webhook") == ("webhook",)
    assert AgentsConfig().enabled("local-llm") == ("local-llm", "echo")


@pytest.mark.parametrize(("kwargs", "key"), [
    ({"allowed": ("gpt",)}, "agents.allowed"),
    ({"allowed": ("openai",)}, "agents.allowed"),  # not configured
    ({"allowed": ("webhook",)}, "agents.allowed"),
    ({"webhook_url": "file:///etc/passwd"}, "agents.webhook_url"),
    ({"openai_base_url": "localhost:8000"}, "agents.openai_base_url"),
    ({"idle_timeout_seconds": 0}, "agents.idle_timeout_seconds"),
    ({"local_llm_model": "/nowhere/model.gguf"}, "agents.local_llm_model"),
])
def test_bad_agent_settings_stop_start_up_naming_the_key(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        AgentsConfig(**kwargs)
    assert raised.value.key == key


def test_the_default_agent_must_exist_and_be_configured() -> None:
    with pytest.raises(ConfigError, match=r"session\.agent"):
        GatewayConfig(session=SessionDefaults(agent="gpt"))
    with pytest.raises(ConfigError, match="openai_model"):
        GatewayConfig(session=SessionDefaults(agent="openai"))


def test_agents_come_from_the_environment_and_secrets_are_masked() -> None:
    config = load_config(ConfigSource(env={
        "VOICE_GATEWAY_SESSION_AGENT": "openai",
        "VOICE_GATEWAY_AGENTS_OPENAI_MODEL": "gpt-4o-mini",
        "VOICE_GATEWAY_AGENTS_OPENAI_API_KEY": "sk-secret",
        "VOICE_GATEWAY_AGENTS_WEBHOOK_URL": WEBHOOK,
        "VOICE_GATEWAY_AGENTS_WEBHOOK_TOKEN": "tok-secret",
        "VOICE_GATEWAY_AGENTS_ALLOWED": "echo, webhook",
    }))
    assert config.agents.openai_api_key == "sk-secret"
    assert config.agents.enabled(config.session.agent) == ("openai", "echo", "webhook")
    shown = to_dict(config)["agents"]
    assert shown["openai_api_key"] == "***" and shown["webhook_token"] == "***"
    assert shown["openai_max_tokens"] == 0 and shown["local_llm_max_tokens"] == 200
    assert "sk-secret" not in repr(ChatEndpoint(config.agents.openai_base_url, "m", "sk-secret"))


def test_the_registry_builds_each_agent_for_a_call() -> None:
    config = GatewayConfig(agents=AgentsConfig(openai_model="m", webhook_url=WEBHOOK))
    registry = default_agents(config)
    assert registry.names == ("echo", "openai", "webhook")
    chat, webhook = registry.create("openai", call_id="rtc_1"), registry.create("webhook", call_id="rtc_1")
    assert isinstance(chat, ChatCompletionsAgent) and isinstance(webhook, WebhookAgent)
    assert chat.call_id == webhook.call_id == "rtc_1"
    assert not chat.speculative and not webhook.speculative  # never called before a turn is confirmed
    assert registry.create("echo").speculative
    registry.close()


# ------------------------------------------------------------ call level

@pytest.fixture
def gateway_config(upstream: ScriptedUpstream) -> GatewayConfig:
    # openai is configured but not allowed: no call can use it.
    return GatewayConfig(agents=AgentsConfig(allowed=("echo", "webhook"), webhook_url=upstream.url + "/turn",
                                             openai_base_url=upstream.url + "/v1", openai_model="m"))


@pytest.mark.slow
async def test_a_call_picks_an_allowed_agent_in_its_offer(upstream: ScriptedUpstream, gateway_url: str) -> None:
    upstream.default = stream(["From the webhook."])
    caller = Caller(gateway_url, session={"agent": "webhook"})
    await caller.connect()
    try:
        session = (await caller.wait_event("session.created"))["session"]
        assert session["agent"] == "webhook"
        caller.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi there"}]}})
        caller.send({"type": "response.create"})
        done = await caller.wait_event("response.done", timeout=20)
        assert done["response"]["output"][0]["content"][0]["transcript"] == "From the webhook."
        assert upstream.exchanges[0].body["transcript"] == "Hi there"
        assert upstream.exchanges[0].body["call_id"] == session["id"]
    finally:
        await caller.hangup()


@pytest.mark.slow
async def test_a_call_cannot_pick_an_agent_the_server_does_not_allow(upstream: ScriptedUpstream,
                                                                     gateway_url: str) -> None:
    with pytest.raises(CallFailed) as raised:
        await Caller(gateway_url, session={"agent": "openai"}).connect()
    assert raised.value.status == 400 and raised.value.code == "invalid_session"

    caller = Caller(gateway_url)
    await caller.connect()
    try:
        await caller.wait_event("session.created")
        for agent in ("openai", "http://evil.example/agent", {"url": "http://evil.example/"}):
            caller.send({"type": "session.update", "event_id": f"evt_{agent!s:.8}", "session": {"agent": agent}})
            error = await caller.wait_event("error", where=lambda e, a=agent: e["error"]["event_id"] == f"evt_{a!s:.8}")
            assert error["error"]["code"] == "invalid_value" and error["error"]["param"] == "session.agent"
        caller.send({"type": "session.update", "session": {"agent": "webhook"}})
        assert (await caller.wait_event("session.updated"))["session"]["agent"] == "webhook"
    finally:
        await caller.hangup()
    assert upstream.exchanges == []  # nothing was called
