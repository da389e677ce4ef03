"""Client-driven replies: the app streams its own text into a response (gateway.response.text.*)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.agents import AgentError
from gateway.agents.client_text import ClientTextError, ClientTextStream
from gateway.config import AgentsConfig, GatewayConfig
from qa.caller import Caller
from tests.gateway.agents.upstream_server import ScriptedUpstream
from tests.support.calls import trimmed
from tests.support.speech import utterance

QUESTION = "ps_cards_002.wav"
INTERRUPTION = "ps_goforward.wav"
FIRST = "Here is the first part of my answer, "
REST = ["and it goes on for a while. ", "Then it ends."]
LONG = [f"Sentence number {n} of a long answer streamed by the app. " for n in range(1, 30)]


def _delta(text: str, response_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "gateway.response.text.delta", "delta": text}
    if response_id is not None:
        event["response_id"] = response_id
    return event


def _transcript(done: dict[str, Any]) -> str:
    return str(done["response"]["output"][0]["content"][0]["transcript"])


# ------------------------------------------------------------ unit level

async def test_the_stream_yields_what_was_pushed_until_done() -> None:
    text = ClientTextStream(idle_timeout=1.0)
    text.push("Hello, ")
    text.push("world.")
    pieces = text.reply([], "")
    assert await anext(pieces) == "Hello, world."
    text.finish()
    assert [piece async for piece in pieces] == []
    assert text.closed
    with pytest.raises(ClientTextError) as raised:
        text.push("late")
    assert raised.value.code == "response_text_done"


async def test_the_stream_is_bounded_and_times_out() -> None:
    text = ClientTextStream(idle_timeout=0.1, max_buffered_chars=10)
    with pytest.raises(ClientTextError) as overflow:
        text.push("x" * 11)
    assert overflow.value.code == "response_text_overflow"
    with pytest.raises(AgentError) as raised:
        [piece async for piece in text.reply([], "")]
    assert raised.value.code == "client_text_timeout" and raised.value.apology == ""


# ------------------------------------------------------------ call level

@pytest.fixture
def gateway_config(upstream: ScriptedUpstream) -> GatewayConfig:
    return GatewayConfig(agents=AgentsConfig(webhook_url=upstream.url + "/turn", client_text_timeout_seconds=1.0))


@pytest.mark.slow
async def test_streamed_text_is_spoken_as_it_arrives_and_barge_in_cuts_it_to_what_was_heard(
        caller: Caller, upstream: ScriptedUpstream) -> None:
    await caller.wait_event("session.created")
    caller.send({"type": "session.update", "session": {"turn_detection": {"create_response": False}}})
    await caller.wait_event("session.updated")
    _, speech_end = await caller.say(utterance(QUESTION).audio(), 16_000)
    await caller.wait_event("conversation.item.input_audio_transcription.completed", since=speech_end - 2)
    await asyncio.sleep(0.5)
    assert caller.events_of("response.created", since=speech_end - 2) == []  # create_response: false

    # The app answers in pieces: speech starts on the first clause, long before text.done.
    caller.send({"type": "response.create", "response": {"text_stream": True}})
    caller.send(_delta(FIRST))
    response_id = (await caller.wait_event("response.created", since=speech_end))["response"]["id"]
    started = await caller.wait_event("output_audio_buffer.started", since=speech_end, timeout=20)
    assert started["response_id"] == response_id
    for piece in REST:
        caller.send(_delta(piece, response_id))
    caller.send({"type": "gateway.response.text.done", "response_id": response_id})
    done = await caller.wait_event("response.done", since=speech_end, timeout=30)
    assert done["response"]["status"] == "completed"
    assert _transcript(done) == " ".join((FIRST + "".join(REST)).split())

    # A long answer, interrupted by the caller: it stops and keeps only what was heard.
    caller.send({"type": "response.create", "response": {"text_stream": True}})
    for piece in LONG[:10]:
        caller.send(_delta(piece))
    created = await caller.wait_event("response.created", where=lambda e: e["response"]["id"] != response_id)
    long_id = created["response"]["id"]
    await caller.wait_event("output_audio_buffer.started", where=lambda e: e["response_id"] == long_id, timeout=20)
    await asyncio.sleep(1.0)
    onset, _ = await caller.say(trimmed(utterance(INTERRUPTION).audio()), 16_000)
    done = await caller.wait_event("response.done", since=onset, where=lambda e: e["response"]["id"] == long_id)
    assert done["response"]["status"] == "cancelled"
    heard = _transcript(done)
    sent = " ".join("".join(LONG[:10]).split())
    assert heard and len(heard) < len(sent) and sent.startswith(heard)
    caller.send(_delta("Text the app sent before it saw the cancel.", long_id))
    caller.send({"type": "gateway.response.text.done", "response_id": long_id})
    await caller.wait_event("conversation.item.input_audio_transcription.completed", since=onset)
    assert caller.events_of("error", since=onset) == []  # late text for a cancelled response is dropped

    # Any agent asked next sees the truncated item: here the webhook agent, selected for this call.
    caller.send({"type": "session.update", "session": {"agent": "webhook"}})
    caller.send({"type": "response.create"})
    exchange = await upstream.wait_for(1)
    assistant = [item for item in exchange.body["history"] if item["role"] == "assistant"]
    assert assistant[-1]["text"] == heard and assistant[-1]["truncated"] is True
    assert assistant[0]["truncated"] is False


@pytest.mark.slow
async def test_bad_stream_events_are_reported_and_the_call_goes_on(caller: Caller) -> None:
    await caller.wait_event("session.created")

    def error_for(event: dict[str, Any]) -> Any:
        event = {**event, "event_id": f"evt_{len(caller.events)}"}
        caller.send(event)
        return caller.wait_event("error", where=lambda e: e["error"]["event_id"] == event["event_id"])

    assert (await error_for(_delta("nobody asked")))["error"]["code"] == "response_not_found"
    bad_flag = await error_for({"type": "response.create", "response": {"text_stream": "yes"}})
    assert bad_flag["error"]["code"] == "invalid_value"

    caller.send({"type": "response.create", "response": {"text_stream": True}})
    response_id = (await caller.wait_event("response.created"))["response"]["id"]
    assert (await error_for(_delta("hi", "resp_other")))["error"]["code"] == "response_not_found"
    assert (await error_for({"type": "gateway.response.text.delta", "delta": 7}))["error"]["code"] == "invalid_value"
    busy = await error_for({"type": "response.create", "response": {"text_stream": True}})
    assert busy["error"]["code"] == "conversation_already_has_active_response"
    # The app goes quiet: after client_text_timeout_seconds the response fails, with an error event.
    timeout = await caller.wait_event("error", where=lambda e: e["error"]["code"] == "client_text_timeout")
    assert timeout["error"]["type"] == "server_error"
    done = await caller.wait_event("response.done", where=lambda e: e["response"]["id"] == response_id)
    assert done["response"]["status"] == "failed"

    # response.cancel stops a streamed response like any other.
    caller.send({"type": "response.create", "response": {"text_stream": True}})
    for piece in LONG[:6]:
        caller.send(_delta(piece))
    created = await caller.wait_event("response.created", where=lambda e: e["response"]["id"] != response_id)
    cancelled_id = created["response"]["id"]
    await caller.wait_event("output_audio_buffer.started", where=lambda e: e["response_id"] == cancelled_id, timeout=20)
    caller.send({"type": "response.cancel"})
    done = await caller.wait_event("response.done", where=lambda e: e["response"]["id"] == cancelled_id)
    assert done["response"]["status"] == "cancelled"

    # An app may open a response and decide to say nothing.
    caller.send({"type": "response.create", "response": {"text_stream": True}})
    caller.send({"type": "gateway.response.text.done"})
    done = await caller.wait_event("response.done",
                                   where=lambda e: e["response"]["id"] not in (response_id, cancelled_id))
    assert done["response"]["status"] == "completed" and _transcript(done) == ""

    # ... and the call goes on.
    caller.send({"type": "response.create", "response": {"text_stream": True}})
    caller.send(_delta("Still here."))
    caller.send({"type": "gateway.response.text.done"})
    done = await caller.wait_event("response.done", where=lambda e: _transcript(e) == "Still here.", timeout=20)
    assert done["response"]["status"] == "completed"

