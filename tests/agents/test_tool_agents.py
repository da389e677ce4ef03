"""Agents with tools, at the unit level and against a scripted upstream (real HTTP on loopback):
the Chat Completions shapes (request tools, tool_calls / tool messages, streamed parallel calls), the
webhook's turn JSON and function-call answers, and the local model that is sent no tools."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator

import pytest

from gateway.agents import (
    AgentError,
    AgentRequest,
    ConversationItem,
    FunctionCallDelta,
    FunctionCallItem,
    FunctionOutputItem,
)
from gateway.agents.chat import ChatCompletionsAgent, ChatEndpoint, chunk_pieces
from gateway.agents.chat_tools import ToolCallAssembler, chat_messages, message_pieces
from gateway.agents.registry import AgentRegistry
from gateway.agents.upstream import UpstreamPolicy
from gateway.agents.webhook import WebhookAgent, WebhookEndpoint
from gateway.protocol.tools import FunctionTool, ToolChoice
from tests.agents.chat_script import WEATHER_CALL, ScriptedCall, calls_tools
from tests.gateway.agents.upstream_server import ScriptedUpstream, scripted_upstream, stream

TOOL = FunctionTool("get_weather", "The weather.", {"type": "object", "properties": {"city": {"type": "string"}}})


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    async with scripted_upstream(calls_tools([WEATHER_CALL])) as scripted:
        yield scripted


def test_calls_and_results_become_tool_calls_and_tool_messages_and_unpaired_ones_are_left_out() -> None:
    history = [
        ConversationItem("1", "user", "weather and time?"),
        ConversationItem("2", "assistant", "Let me check."),
        FunctionCallItem("3", "call_a", "get_weather", '{"city": "Paris"}'),
        FunctionCallItem("4", "call_b", "get_time", "{}"),
        FunctionOutputItem("5", "call_a", "sunny"),
        FunctionOutputItem("6", "call_b", "noon"),
        FunctionCallItem("7", "call_waiting", "get_weather", "{}"),  # the caller spoke while it ran
        FunctionOutputItem("8", "call_unknown", "orphan"),
        ConversationItem("9", "user", "hello?"),
    ]
    assert chat_messages(history, "") == [
        {"role": "user", "content": "weather and time?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
        {"role": "user", "content": "hello?"}]
    # A call without a spoken preamble is an assistant message of its own.
    call_a = {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    assert chat_messages(history[2:3] + history[4:5], "")[0] == {
        "role": "assistant", "content": None, "tool_calls": [call_a]}


def test_streamed_tool_call_fragments_interleaved_by_index_are_told_apart() -> None:
    calls = ToolCallAssembler()
    chunk = lambda delta: json.dumps({"choices": [{"index": 0, "delta": delta}]})  # noqa: E731
    pieces = [
        *chunk_pieces(chunk({"content": "Sure. ", "tool_calls": [
            {"index": 0, "id": "call_a", "function": {"name": "get_weather", "arguments": ""}}]}), calls),
        *chunk_pieces(chunk({"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "get_time"}}]}), calls),
        *chunk_pieces(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}},
                                            {"index": 1, "function": {"arguments": "{}"}}]}), calls),
        *chunk_pieces(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}), calls),
    ]
    assert pieces == ["Sure. ", FunctionCallDelta(0, "call_a", "get_weather", ""),
                      FunctionCallDelta(1, "call_b", "get_time", ""), FunctionCallDelta(0, "call_a", "get_weather",
                                                                                         '{"city":'),
                      FunctionCallDelta(1, "call_b", "get_time", "{}"),
                      FunctionCallDelta(0, "call_a", "get_weather", '"Oslo"}')]
    with pytest.raises(AgentError) as raised:
        chunk_pieces(chunk({"tool_calls": [{"index": 5, "function": {"arguments": "{}"}}]}), calls)
    assert raised.value.code == "agent_bad_response"  # a call must start with its name
    with pytest.raises(AgentError):
        chunk_pieces(chunk({"tool_calls": "nope"}), calls)


def test_fragments_without_an_index_continue_the_call_they_follow() -> None:
    calls = ToolCallAssembler()
    assert calls.pieces([{"id": "call_a", "function": {"name": "f", "arguments": "{"}}]) == [
        FunctionCallDelta(0, "call_a", "f", "{")]
    assert calls.pieces([{"function": {"arguments": "}"}}]) == [FunctionCallDelta(0, "call_a", "f", "}")]
    assert calls.pieces([{"id": "call_b", "function": {"name": "g"}}]) == [FunctionCallDelta(1, "call_b", "g", "")]


def test_a_whole_answer_with_tool_calls_gives_the_same_pieces() -> None:
    message = {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]}
    assert message_pieces(message) == [FunctionCallDelta(0, "call_a", "get_weather", "{}")]
    with pytest.raises(AgentError):
        message_pieces({"role": "assistant"})


async def test_the_chat_agent_sends_tools_and_streams_the_call(upstream: ScriptedUpstream) -> None:
    agent = ChatCompletionsAgent(ChatEndpoint(upstream.url + "/v1", "m"), UpstreamPolicy())
    assert agent.can_call_tools
    request = AgentRequest([ConversationItem("1", "user", "weather?")], "Be brief.", (TOOL,),
                           ToolChoice("required", "get_weather"))
    pieces = [piece async for piece in agent.respond(request)]
    assert "".join(p.arguments for p in pieces if isinstance(p, FunctionCallDelta)) == '{"city": "Paris"}'
    assert {(p.call_id, p.name) for p in pieces if isinstance(p, FunctionCallDelta)} == {
        ("call_weather_1", "get_weather")}
    body = upstream.exchanges[0].body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["tools"][0]["function"]["name"] == "get_weather"
    # Without tools the request is what it always was.
    upstream.default = stream([], raw=['data: {"choices": [{"delta": {"content": "Hi"}}]}\n\n'],
                              content_type="text/event-stream")
    assert [p async for p in agent.reply([ConversationItem("1", "user", "hi")], "")] == ["Hi"]
    assert "tools" not in upstream.exchanges[1].body and "tool_choice" not in upstream.exchanges[1].body


async def test_an_endpoint_without_tools_is_sent_none_and_says_so(upstream: ScriptedUpstream) -> None:
    """The local-llm agent (SmolLM2-135M cannot call functions): no tools, no function items, can_call_tools False."""
    upstream.default = stream([], raw=['data: {"choices": [{"delta": {"content": "Hello."}}]}\n\n'],
                              content_type="text/event-stream")
    endpoint = ChatEndpoint(upstream.url + "/v1", "local-llm", tools=False)
    registry = AgentRegistry({"local-llm": functools.partial(ChatCompletionsAgent, endpoint, UpstreamPolicy())})
    agent = registry.create("local-llm")
    assert not agent.can_call_tools
    history = [ConversationItem("1", "user", "weather?"), FunctionCallItem("2", "c", "get_weather", "{}"),
               FunctionOutputItem("3", "c", "sunny")]
    assert [p async for p in agent.respond(AgentRequest(history, "", (TOOL,)))] == ["Hello."]
    body = upstream.exchanges[0].body
    assert "tools" not in body and body["messages"] == [{"role": "user", "content": "weather?"}]


@pytest.mark.parametrize(("answer", "content_type"), [
    ('{"text": "Checking. "}\n{"function_call": {"name": "get_weather", "arguments": {"city": "Paris"}}}\n',
     "application/x-ndjson"),
    ('data: {"text": "Checking. "}\n\ndata: {"function_call": {"name": "get_weather", "call_id": "call_w", '
     '"arguments": "{\\"city\\": \\"Paris\\"}"}}\n\ndata: [DONE]\n\n', "text/event-stream"),
    ('{"text": "Checking. ", "function_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]}',
     "application/json"),
])
async def test_the_webhook_gets_tools_and_results_and_answers_with_calls(upstream: ScriptedUpstream, answer: str,
                                                                         content_type: str) -> None:
    upstream.default = stream([answer], content_type=content_type)
    agent = WebhookAgent(WebhookEndpoint(upstream.url + "/turn"), UpstreamPolicy())
    assert agent.can_call_tools
    history = [ConversationItem("1", "user", "weather?"), FunctionCallItem("2", "call_0", "get_weather", "{}"),
               FunctionOutputItem("3", "call_0", "rainy")]
    pieces = [p async for p in agent.respond(AgentRequest(history, "Be brief.", (TOOL,)))]
    assert pieces[0] == "Checking. "
    [call] = pieces[1:]
    assert isinstance(call, FunctionCallDelta) and call.index == 0 and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"} and call.call_id.startswith("call_")
    body = upstream.exchanges[0].body
    assert body["tools"] == [TOOL.to_dict()] and body["tool_choice"] == "auto"
    assert body["history"][1:] == [
        {"id": "2", "type": "function_call", "call_id": "call_0", "name": "get_weather", "arguments": "{}"},
        {"id": "3", "type": "function_call_output", "call_id": "call_0", "output": "rainy"}]
    assert body["transcript"] == "weather?"


async def test_a_webhook_call_without_a_name_is_a_bad_response(upstream: ScriptedUpstream) -> None:
    upstream.default = stream(['{"function_call": {"arguments": {}}}\n'], content_type="application/x-ndjson")
    agent = WebhookAgent(WebhookEndpoint(upstream.url + "/turn"), UpstreamPolicy())
    with pytest.raises(AgentError) as raised:
        [p async for p in agent.respond(AgentRequest([ConversationItem("1", "user", "x")], ""))]
    assert raised.value.code == "agent_bad_response"


def test_a_second_scripted_call_streams_by_its_own_index() -> None:
    from tests.agents.chat_script import tool_call_lines
    lines = tool_call_lines([WEATHER_CALL, ScriptedCall("call_2", "get_time", ["{}"])])
    calls = ToolCallAssembler()
    pieces = [p for line in lines if line.startswith("data: {") for p in chunk_pieces(line[6:], calls)]
    assert [p.index for p in pieces if isinstance(p, FunctionCallDelta)] == [0, 0, 0, 1, 1]
