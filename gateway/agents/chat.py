"""The OpenAI-compatible chat agent: a streamed Chat Completions request per reply.

Works with any server that speaks ``POST {base_url}/chat/completions`` with
``"stream": true`` (OpenAI, llama.cpp's server, vLLM, Ollama, LiteLLM, ...).
The session's instructions are the system prompt; the most recent conversation
items follow (``limits.max_agent_history_*``), assistant items holding only
what the caller heard. Tokens are yielded
as they arrive, so speech starts on the first clause.

The session's tools and tool choice are forwarded as Chat Completions ``tools`` /
``tool_choice``, and streamed ``tool_calls`` come back as function calls
(gateway/agents/chat_tools.py). An endpoint made with ``tools=False`` (the
local SmolLM2, which cannot call functions) sends neither.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.agents.base import Agent, AgentError, AgentPiece, AgentRequest, ConversationItem
from gateway.agents.chat_tools import (
    ToolCallAssembler,
    chat_messages,
    chat_tool_choice,
    chat_tools,
    message_pieces,
)
from gateway.agents.upstream import UpstreamPolicy, failures, post_stream, sse_data

__all__ = ["ChatCompletionsAgent", "ChatEndpoint", "chat_messages", "chunk_pieces", "chunk_text"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatEndpoint:
    base_url: str
    model: str
    api_key: str = ""
    max_tokens: int = 0  # 0: not sent
    max_history_items: int = 0  # only the latest items (small context windows); 0: all
    tools: bool = True  # the model can call functions: forward the session's tools

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def __repr__(self) -> str:  # never show the key
        return f"ChatEndpoint(base_url={self.base_url!r}, model={self.model!r})"


def chunk_text(data: str) -> str:
    """The text of one streamed ``chat.completion.chunk`` (``data`` of one event)."""
    return "".join(piece for piece in chunk_pieces(data, ToolCallAssembler()) if isinstance(piece, str))


def chunk_pieces(data: str, calls: ToolCallAssembler) -> list[AgentPiece]:
    """The text and tool-call pieces of one streamed ``chat.completion.chunk``."""
    try:
        chunk: Any = json.loads(data)
    except ValueError as exc:
        raise AgentError("agent_bad_response", f"a stream event is not JSON: {data[:120]!r}") from exc
    if not isinstance(chunk, dict):
        raise AgentError("agent_bad_response", f"a stream event is not an object: {data[:120]!r}")
    if "error" in chunk:
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise AgentError("agent_upstream_error", f"the model reported an error: {message}")
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        raise AgentError("agent_bad_response", f"a stream event has no choices: {data[:120]!r}")
    if not choices:
        return []  # e.g. a final usage chunk
    choice = choices[0]
    delta = choice.get("delta") if isinstance(choice, dict) else None
    if not isinstance(delta, dict):
        raise AgentError("agent_bad_response", f"a stream event has no delta: {data[:120]!r}")
    content = delta.get("content")
    if content is not None and not isinstance(content, str):
        raise AgentError("agent_bad_response", "a delta's content is not a string")
    pieces: list[AgentPiece] = [content] if content else []
    if delta.get("tool_calls"):
        pieces.extend(calls.pieces(delta["tool_calls"]))
    return pieces


def _message(body: Any) -> Any:
    """``choices[0].message`` of a whole (non-streamed) ``chat.completion``."""
    try:
        return body["choices"][0]["message"]
    except (KeyError, IndexError, TypeError) as exc:
        raise AgentError("agent_bad_response", "the answer has no choices[0].message") from exc


class ChatCompletionsAgent(Agent):
    name = "openai"
    speculative = False  # a request costs money and may have side effects: only for confirmed turns

    def __init__(self, endpoint: ChatEndpoint, policy: UpstreamPolicy, *, name: str = "openai") -> None:
        self.endpoint = endpoint
        self.policy = policy
        self.name = name
        self.can_call_tools = endpoint.tools

    async def reply(self, history: Sequence[ConversationItem], instructions: str) -> AsyncIterator[str]:
        async for piece in self.respond(AgentRequest(history, instructions)):
            if isinstance(piece, str):
                yield piece

    def _body(self, request: AgentRequest) -> dict[str, Any]:
        history = self.policy.window.recent(request.history if self.can_call_tools else request.messages)
        messages = chat_messages(history, request.instructions, self.endpoint.max_history_items)
        body: dict[str, Any] = {"model": self.endpoint.model, "messages": messages, "stream": True}
        if self.endpoint.max_tokens:
            body["max_tokens"] = self.endpoint.max_tokens
        if self.can_call_tools and request.tools:
            body["tools"] = chat_tools(request.tools)
            body["tool_choice"] = chat_tool_choice(request.tool_choice)
        return body

    async def respond(self, request: AgentRequest) -> AsyncIterator[AgentPiece]:
        body = self._body(request)
        headers = {"Accept": "text/event-stream"}
        if self.endpoint.api_key:
            headers["Authorization"] = f"Bearer {self.endpoint.api_key}"
        what = f"the {self.name} agent"  # the caller may see it: no URL (failures logs that)
        started = time.monotonic()
        first = True
        logger.debug("call %s: %s request, %d messages", self.call_id, self.name, len(body["messages"]))
        failed = failures(what, self.policy, call_id=self.call_id, url=self.endpoint.url)
        async with failed, post_stream(self.endpoint.url, body, headers=headers, policy=self.policy,
                                       what=what) as stream:
            if stream.content_type == "application/json":  # a server that ignores "stream"
                for piece in message_pieces(_message(await stream.json())):
                    yield piece
                return
            calls = ToolCallAssembler()
            async for data in sse_data(stream.lines()):
                if data.strip() == "[DONE]":
                    break
                for piece in chunk_pieces(data, calls):
                    if first:
                        first = False
                        logger.info("call %s: %s first token after %.0f ms", self.call_id, self.name,
                                    (time.monotonic() - started) * 1000)
                    yield piece
        logger.debug("call %s: %s reply streamed in %.0f ms", self.call_id, self.name,
                     (time.monotonic() - started) * 1000)
