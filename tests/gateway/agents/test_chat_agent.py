"""The OpenAI-compatible chat agent against a real local model (SmolLM2 on llama.cpp's server).

Call-level tests put a recording proxy (tests/gateway/agents/upstream_server.py)
between the gateway and the model: it relays the real stream, paced like a
remote model, and sees on the server side when the gateway hangs up on it.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from gateway.agents import AgentError, ConversationItem
from gateway.agents.chat import ChatCompletionsAgent, ChatEndpoint, chat_messages, chunk_text
from gateway.agents.local_llm import LocalLlmServer
from gateway.agents.upstream import UpstreamPolicy
from gateway.app.engines import default_agents
from gateway.config import AgentsConfig, GatewayConfig, SessionDefaults
from qa.caller import Caller
from tests.gateway.agents.upstream_server import (
    ScriptedUpstream,
    forward,
    say_through_failures,
    stall,
    status,
    stream,
    wait_until,
)
from tests.support.calls import trimmed
from tests.support.speech import utterance

INSTRUCTIONS = "You are a friendly voice assistant. Answer in one short sentence."
APOLOGY = "Sorry, my brain is offline."
QUESTION = "ps_cards_001.wav"
INTERRUPTION = "ps_goforward.wav"


# ------------------------------------------------------------ unit level

def test_messages_are_the_instructions_then_the_items_the_caller_heard() -> None:
    history = [ConversationItem("1", "user", "hello"), ConversationItem("2", "assistant", "Hi there", truncated=True),
               ConversationItem("3", "assistant", "", truncated=True), ConversationItem("4", "user", "and you?")]
    assert chat_messages(history, "Be brief.") == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hi there"}, {"role": "user", "content": "and you?"}]
    assert chat_messages(history, "", max_items=1) == [{"role": "user", "content": "and you?"}]


@pytest.mark.parametrize(("data", "code"), [
    ("{not json", "agent_bad_response"),
    ("[1, 2]", "agent_bad_response"),
    ('{"id": "x"}', "agent_bad_response"),
    ('{"choices": [{"index": 0}]}', "agent_bad_response"),
    ('{"error": {"message": "rate limited"}}', "agent_upstream_error"),
])
def test_malformed_chunks_are_agent_errors(data: str, code: str) -> None:
    with pytest.raises(AgentError) as raised:
        chunk_text(data)
    assert raised.value.code == code


def test_usage_and_role_chunks_carry_no_text() -> None:
    assert chunk_text('{"choices": []}') == ""
    assert chunk_text('{"choices": [{"delta": {"role": "assistant"}}]}') == ""
    assert chunk_text('{"choices": [{"delta": {"content": "Hi"}}]}') == "Hi"


async def test_a_real_model_reply_streams_in_many_pieces(llama_server: LocalLlmServer) -> None:
    agent = ChatCompletionsAgent(ChatEndpoint(llama_server.base_url, "smollm2", max_tokens=24), UpstreamPolicy())
    history = [ConversationItem("item_1", "user", "What is the capital of France?")]
    pieces = [piece async for piece in agent.reply(history, INSTRUCTIONS)]
    assert len(pieces) >= 5 and "".join(pieces).strip()
    assert not agent.speculative  # never called before the turn is confirmed


async def test_the_local_llm_agent_runs_its_own_server_and_stops_it() -> None:
    config = GatewayConfig(session=SessionDefaults(agent="local-llm"),
                           agents=AgentsConfig(local_llm_max_tokens=8, local_llm_threads=1))
    registry = await asyncio.to_thread(default_agents, config)
    try:
        assert registry.names == ("local-llm", "echo")
        agent = registry.create("local-llm", call_id="rtc_local")
        assert isinstance(agent, ChatCompletionsAgent) and agent.call_id == "rtc_local"
        pieces = [piece async for piece in agent.reply([ConversationItem("1", "user", "Say hello.")], "")]
        assert "".join(pieces).strip()
    finally:
        registry.close()
        registry.close()  # safe twice
    async with aiohttp.ClientSession() as http:  # the server is gone
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get(agent.endpoint.base_url + "/models"):
                pass


# ------------------------------------------------------------ call level

@pytest.fixture
def gateway_config(upstream: ScriptedUpstream, llama_server: LocalLlmServer) -> GatewayConfig:
    upstream.default = forward(llama_server.base_url)
    return GatewayConfig(
        session=SessionDefaults(agent="openai", instructions=INSTRUCTIONS),
        agents=AgentsConfig(openai_base_url=upstream.url + "/v1", openai_model="smollm2", openai_api_key="sk-test",
                            openai_max_tokens=300, idle_timeout_seconds=2.0, apology=APOLOGY),
    )


@pytest.mark.slow
async def test_model_tokens_are_spoken_as_they_stream_and_barge_in_closes_the_stream(
        caller: Caller, upstream: ScriptedUpstream, llama_server: LocalLlmServer) -> None:
    # A remote model's pace (25 tokens/s at most) that never stops by itself: max_tokens ends the model
    # after 12 s or more, and the relay holds the stream open after that, however long speech takes to start.
    upstream.script = [forward(llama_server.base_url, delay=0.04, endless=True, hold=True),
                       forward(llama_server.base_url)]
    await caller.wait_event("session.created")
    _, speech_end = await caller.say(utterance(QUESTION).audio(), 16_000)
    await caller.wait_event("output_audio_buffer.started", since=speech_end, timeout=30)
    first = upstream.exchanges[0]
    assert first.ended_at is None and first.disconnected_at is None, "speech starts while the model streams"
    assert first.path == "/v1/chat/completions"
    assert first.headers["Authorization"] == "Bearer sk-test"
    assert first.body["model"] == "smollm2" and first.body["stream"] is True and first.body["max_tokens"] == 300
    transcript = (await caller.wait_event("conversation.item.input_audio_transcription.completed",
                                          since=speech_end - 2))["transcript"]
    assert first.body["messages"] == [{"role": "system", "content": INSTRUCTIONS},
                                      {"role": "user", "content": transcript}]

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
    streamed = " ".join(first.text.split())
    assert heard and len(heard) < len(streamed) and streamed.startswith(heard)

    # The interruption is the next turn; the model is told only what the caller heard.
    second = await upstream.wait_for(2)
    assert second.body["messages"][-2] == {"role": "assistant", "content": heard}
    assert second.body["messages"][-1]["role"] == "user"
    done = await caller.wait_event("response.done", since=onset, timeout=30,
                                   where=lambda e: e["response"]["status"] == "completed")
    assert done["response"]["output"][0]["content"][0]["transcript"].strip()


@pytest.mark.slow
async def test_model_failures_are_reported_and_apologised_for_and_the_call_goes_on(
        caller: Caller, upstream: ScriptedUpstream) -> None:
    upstream.script = [status(500), stream(['data: {"choices": [oops\n\n'], content_type="text/event-stream"),
                       stall(content_type="text/event-stream")]
    transcript = await say_through_failures(caller, upstream, QUESTION, APOLOGY)
    assert transcript.strip()
    # The apologies were heard, so the model sees them as the assistant's turns.
    assert [m["content"] for m in upstream.exchanges[3].body["messages"] if m["role"] == "assistant"] == [APOLOGY] * 3
