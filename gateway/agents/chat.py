"""The OpenAI-compatible chat agent: a streamed Chat Completions request per reply.

Works with any server that speaks ``POST {base_url}/chat/completions`` with
``"stream": true`` (OpenAI, llama.cpp's server, vLLM, Ollama, LiteLLM, ...).
The session's instructions are the system prompt; the most recent conversation
items follow (``limits.max_agent_history_*``), assistant items holding only
what the caller heard. Tokens are yielded
as they arrive, so speech starts on the first clause.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.agents.base import Agent, AgentError, ConversationItem
from gateway.agents.upstream import UpstreamPolicy, failures, post_stream, sse_data

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChatEndpoint:
    base_url: str
    model: str
    api_key: str = ""
    max_tokens: int = 0  # 0: not sent
    max_history_items: int = 0  # only the latest items (small context windows); 0: all

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def __repr__(self) -> str:  # never show the key
        return f"ChatEndpoint(base_url={self.base_url!r}, model={self.model!r})"


def chat_messages(history: Sequence[ConversationItem], instructions: str, max_items: int = 0) -> list[dict[str, str]]:
    """The Chat Completions ``messages``: instructions as the system prompt, then the non-empty items."""
    messages = [{"role": "system", "content": instructions}] if instructions.strip() else []
    for item in history[-max_items:] if max_items else history:
        if item.text.strip():
            messages.append({"role": item.role, "content": item.text})
    return messages


def chunk_text(data: str) -> str:
    """The text of one streamed ``chat.completion.chunk`` (``data`` of one event)."""
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
        return ""  # e.g. a final usage chunk
    choice = choices[0]
    delta = choice.get("delta") if isinstance(choice, dict) else None
    if not isinstance(delta, dict):
        raise AgentError("agent_bad_response", f"a stream event has no delta: {data[:120]!r}")
    content = delta.get("content")
    if content is not None and not isinstance(content, str):
        raise AgentError("agent_bad_response", "a delta's content is not a string")
    return content or ""


def message_text(body: Any) -> str:
    """The text of a whole (non-streamed) ``chat.completion``."""
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise AgentError("agent_bad_response", "the answer has no choices[0].message.content") from exc
    if not isinstance(content, str):
        raise AgentError("agent_bad_response", "the answer's content is not a string")
    return content


class ChatCompletionsAgent(Agent):
    name = "openai"
    speculative = False  # a request costs money and may have side effects: only for confirmed turns

    def __init__(self, endpoint: ChatEndpoint, policy: UpstreamPolicy, *, name: str = "openai") -> None:
        self.endpoint = endpoint
        self.policy = policy
        self.name = name

    async def reply(self, history: Sequence[ConversationItem], instructions: str) -> AsyncIterator[str]:
        messages = chat_messages(self.policy.window.recent(history), instructions, self.endpoint.max_history_items)
        body: dict[str, Any] = {"model": self.endpoint.model, "messages": messages, "stream": True}
        if self.endpoint.max_tokens:
            body["max_tokens"] = self.endpoint.max_tokens
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
                yield message_text(await stream.json())
                return
            async for data in sse_data(stream.lines()):
                if data.strip() == "[DONE]":
                    break
                text = chunk_text(data)
                if text:
                    if first:
                        first = False
                        logger.info("call %s: %s first token after %.0f ms", self.call_id, self.name,
                                    (time.monotonic() - started) * 1000)
                    yield text
        logger.debug("call %s: %s reply streamed in %.0f ms", self.call_id, self.name,
                     (time.monotonic() - started) * 1000)
