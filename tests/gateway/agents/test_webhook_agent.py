"""The webhook agent: its formats and failures against a local server, then through real calls."""

from __future__ import annotations

import asyncio
import socket

import pytest

from gateway.agents import AgentError, ConversationItem
from gateway.agents.upstream import UpstreamPolicy
from gateway.agents.webhook import WebhookAgent, WebhookEndpoint
from gateway.config import AgentsConfig, GatewayConfig, SessionDefaults
from qa.caller import Caller
from tests.gateway.agents.upstream_server import (
    Behaviour,
    ScriptedUpstream,
    ndjson,
    say_through_failures,
    sse,
    stall,
    status,
    stream,
    wait_until,
)
from tests.support.calls import trimmed
from tests.support.speech import utterance

APOLOGY = "Sorry, the webhook is not answering."
POLICY = UpstreamPolicy(connect_timeout=2.0, response_timeout=2.0, idle_timeout=0.5, apology=APOLOGY)
HISTORY = [
    ConversationItem("item_1", "user", "hello"),
    ConversationItem("item_2", "assistant", "Hi, how can", truncated=True),
    ConversationItem("item_3", "user", "what time is it"),
]
QUESTION = "ps_cards_001.wav"
INTERRUPTION = "ps_goforward.wav"
LONG_REPLY = [f"This is sentence number {n} of a long webhook answer. " for n in range(1, 40)]


def _agent(upstream: ScriptedUpstream, token: str = "") -> WebhookAgent:
    agent = WebhookAgent(WebhookEndpoint(upstream.url + "/turn", token), POLICY)
    agent.call_id = "rtc_test"
    return agent


async def _pieces(agent: WebhookAgent) -> list[str]:
    return [piece async for piece in agent.reply(HISTORY, "Be brief.")]


# ------------------------------------------------------------ unit level

@pytest.mark.parametrize(("behaviour", "expected"), [
    (stream(["Hello, ", "world. ", "Bye."], delay=0.05), ["Hello, ", "world. ", "Bye."]),
    (stream(["Hello, ", "world."], encode=ndjson, content_type="application/x-ndjson"), ["Hello, ", "world."]),
    (stream(["Hello, ", "world."], encode=sse, content_type="text/event-stream", delay=0.05,
            trailer="data: [DONE]\n\n"), ["Hello, ", "world."]),
    (stream(["data: plain text\n\n", ": keep-alive\n\n", "data: more\n\n"], content_type="text/event-stream"),
     ["plain text", "more"]),
    (stream(['{"text": "All at once."}'], content_type="application/json"), ["All at once."]),
    (status(204, ""), []),
])
async def test_each_response_format_streams_text(upstream: ScriptedUpstream, behaviour: Behaviour,
                                                 expected: list[str]) -> None:
    upstream.default = behaviour
    pieces = await _pieces(_agent(upstream))
    assert "".join(pieces) == "".join(expected)
    if len(expected) > 1:
        assert len(pieces) >= 2  # streamed, not buffered into one piece


async def test_the_turn_is_posted_as_json_with_the_history_and_token(upstream: ScriptedUpstream) -> None:
    await _pieces(_agent(upstream, token="s3cret"))
    exchange = upstream.exchanges[0]
    assert exchange.path == "/turn"
    assert exchange.headers["Authorization"] == "Bearer s3cret"
    assert exchange.body == {
        "type": "gateway.turn", "call_id": "rtc_test", "instructions": "Be brief.", "transcript": "what time is it",
        "history": [
            {"id": "item_1", "role": "user", "text": "hello", "truncated": False},
            {"id": "item_2", "role": "assistant", "text": "Hi, how can", "truncated": True},
            {"id": "item_3", "role": "user", "text": "what time is it", "truncated": False},
        ],
    }


@pytest.mark.parametrize(("behaviour", "code"), [
    (status(500), "agent_http_error"),
    (status(302), "agent_http_error"),  # redirects are not followed: only configured URLs are called
    (stream(["not json\n"], content_type="application/x-ndjson"), "agent_bad_response"),
    (stream(['{"error": "quota exceeded"}\n'], content_type="application/x-ndjson"), "agent_upstream_error"),
    (stream(['{"count": 3}\n'], content_type="application/x-ndjson"), "agent_bad_response"),
    (stream(["<html></html>"], content_type="text/html"), "agent_bad_response"),
    (stall(), "agent_timeout"),
])
async def test_failures_become_agent_errors_with_the_apology(upstream: ScriptedUpstream, behaviour: Behaviour,
                                                             code: str) -> None:
    upstream.default = behaviour
    with pytest.raises(AgentError) as raised:
        await _pieces(_agent(upstream))
    assert raised.value.code == code
    assert raised.value.apology == APOLOGY


async def test_an_unreachable_webhook_is_an_agent_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    agent = WebhookAgent(WebhookEndpoint(f"http://127.0.0.1:{port}/turn"), POLICY)
    with pytest.raises(AgentError) as raised:
        await _pieces(agent)
    assert raised.value.code == "agent_unreachable"


async def test_closing_the_reply_closes_the_connection_at_once(upstream: ScriptedUpstream) -> None:
    upstream.default = stream(LONG_REPLY, delay=0.05)
    pieces = _agent(upstream).reply(HISTORY, "")
    assert await anext(pieces)
    await pieces.aclose()  # type: ignore[attr-defined]
    await wait_until(lambda: upstream.exchanges[0].disconnected_at is not None, within=2)
    assert upstream.exchanges[0].ended_at is None


# ------------------------------------------------------------ call level

@pytest.fixture
def gateway_config(upstream: ScriptedUpstream) -> GatewayConfig:
    return GatewayConfig(
        session=SessionDefaults(agent="webhook"),
        agents=AgentsConfig(webhook_url=upstream.url + "/turn", idle_timeout_seconds=1.5, apology=APOLOGY),
    )


@pytest.mark.slow
async def test_webhook_reply_is_spoken_as_it_streams_and_barge_in_closes_it(
        caller: Caller, upstream: ScriptedUpstream) -> None:
    upstream.script = [stream(LONG_REPLY, encode=sse, content_type="text/event-stream", delay=0.25),
                       stream(["Understood, ", "going forward."], encode=ndjson, content_type="application/x-ndjson")]
    call_id = (await caller.wait_event("session.created"))["session"]["id"]
    _, speech_end = await caller.say(utterance(QUESTION).audio(), 16_000)
    await caller.wait_event("output_audio_buffer.started", since=speech_end, timeout=30)
    first = upstream.exchanges[0]
    assert first.ended_at is None and first.disconnected_at is None, "speech starts while the answer streams"
    transcript = (await caller.wait_event("conversation.item.input_audio_transcription.completed",
                                          since=speech_end - 2))["transcript"]
    assert first.body["call_id"] == call_id
    assert first.body["transcript"] == transcript

    await asyncio.sleep(1.0)
    onset, _ = await caller.say(trimmed(utterance(INTERRUPTION).audio()), 16_000)
    done = await caller.wait_event("response.done", since=onset, where=lambda e: e["response"]["status"] == "cancelled")
    speech_started_at = min(at for at, e in caller.events
                            if e["type"] == "input_audio_buffer.speech_started" and at >= onset)
    # Speech over the reply pauses it at once; once its words make it a real interruption (not a cough or a
    # backchannel: gateway/voice/interruptions.py) the reply is cancelled and the upstream stream closed.
    paused_at = min(at for at, e in caller.events if e["type"] == "gateway.response.paused" and at >= onset)
    assert paused_at - speech_started_at < 1.0
    cancelled_at = next(at for at, e in caller.events if e is done)
    await wait_until(lambda: first.disconnected_at is not None, within=5)
    assert first.ended_at is None
    assert first.disconnected_at is not None and first.disconnected_at - cancelled_at < 1.0
    heard = done["response"]["output"][0]["content"][0]["transcript"]
    sent = " ".join(first.text.split())
    assert heard and len(heard) < len(sent) and sent.startswith(heard)

    second = await upstream.wait_for(2)
    assistant = second.body["history"][-2]
    assert assistant["role"] == "assistant" and assistant["text"] == heard and assistant["truncated"] is True
    assert second.body["history"][-1]["role"] == "user"
    done = await caller.wait_event("response.done", since=onset, timeout=30,
                                   where=lambda e: e["response"]["status"] == "completed")
    assert done["response"]["output"][0]["content"][0]["transcript"] == "Understood, going forward."


@pytest.mark.slow
async def test_webhook_failures_are_reported_and_apologised_for_and_the_call_goes_on(
        caller: Caller, upstream: ScriptedUpstream) -> None:
    upstream.script = [status(500), stream(["not json\n"], content_type="application/x-ndjson"), stall()]
    upstream.default = stream(["All good."])
    transcript = await say_through_failures(caller, upstream, QUESTION, APOLOGY)
    assert transcript == "All good."
