"""The webhook agent: POSTs the turn as JSON to a configured URL and speaks what streams back.

Request body::

    {"type": "gateway.turn", "call_id": "rtc_...", "instructions": "...",
     "transcript": "what the caller just said",
     "history": [{"id": "item_...", "role": "user", "text": "...", "truncated": false}, ...]}

``history`` holds the most recent items only (``limits.max_agent_history_items`` and ``_chars``).
With tools in the session the body also has ``"tools"`` (the session's, GA shape) and ``"tool_choice"``,
and ``history`` holds the function calls and their results:
``{"id", "type": "function_call", "call_id", "name", "arguments"}`` and
``{"id", "type": "function_call_output", "call_id", "output"}`` (messages, as before, have no ``type``).

The answer may stream in any of these forms, chosen by its ``Content-Type``:

* ``text/plain`` (or none): the body is the text, spoken as it arrives;
* ``application/x-ndjson`` / ``application/jsonl``: one JSON value per line, ``{"text": "..."}``
  (or ``{"delta": "..."}``, or a JSON string); ``{"error": "..."}`` fails the reply;
* ``text/event-stream``: each event's ``data`` is the text, or (when it starts with ``{``) a JSON
  object as in NDJSON; ``[DONE]`` ends it;
* ``application/json``: one ``{"text": "..."}`` for the whole reply.

Any JSON object may instead call a function: ``{"function_call": {"name": "...", "arguments": {...} or
"...JSON text...", "call_id": "..." (optional)}}``; ``application/json`` may carry
``"function_calls": [...]`` next to its ``"text"``. The client runs the function and sends its result;
the next turn's body holds it (docs/protocol.md, "Tools").

An empty answer (or ``204``) means the agent chose not to speak.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.agents.base import (
    Agent,
    AgentError,
    AgentPiece,
    AgentRequest,
    ConversationItem,
    FunctionCallDelta,
    FunctionCallItem,
    HistoryItem,
    last_user_text,
)
from gateway.agents.upstream import UpstreamPolicy, UpstreamStream, failures, post_stream, sse_data
from gateway.protocol.server_events import new_id

logger = logging.getLogger(__name__)

NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-seq", "application/ndjson")
PLAIN_TYPES = ("text/plain", "application/octet-stream", "")


@dataclass(frozen=True)
class WebhookEndpoint:
    url: str
    token: str = ""

    def __repr__(self) -> str:  # never show the token
        return f"WebhookEndpoint(url={self.url!r})"


def turn_payload(call_id: str, history: Sequence[HistoryItem], instructions: str,
                 request: AgentRequest | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "gateway.turn",
        "call_id": call_id,
        "instructions": instructions,
        "transcript": last_user_text(history),
        "history": [_history_entry(item) for item in history],
    }
    if request is not None and request.tools:
        payload["tools"] = [tool.to_dict() for tool in request.tools]
        payload["tool_choice"] = request.tool_choice.to_wire()
    return payload


def _history_entry(item: HistoryItem) -> dict[str, Any]:
    if isinstance(item, ConversationItem):
        return {"id": item.id, "role": item.role, "text": item.text, "truncated": item.truncated}
    if isinstance(item, FunctionCallItem):
        return {"id": item.id, "type": "function_call", "call_id": item.call_id, "name": item.name,
                "arguments": item.arguments}
    return {"id": item.id, "type": "function_call_output", "call_id": item.call_id, "output": item.output}


class _Calls:
    """Numbers the function calls of one answer (each JSON object carries one whole call)."""

    def __init__(self) -> None:
        self.count = 0

    def call(self, value: Any) -> FunctionCallDelta:
        if not isinstance(value, dict) or not isinstance(value.get("name"), str) or not value["name"]:
            raise AgentError("agent_bad_response", "a function_call needs a \"name\"")
        arguments = value.get("arguments", {})
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments)
        call_id = value.get("call_id")
        self.count += 1
        return FunctionCallDelta(self.count - 1, call_id if isinstance(call_id, str) and call_id else new_id("call"),
                                 value["name"], arguments)


def json_piece(value: Any, calls: _Calls | None = None) -> AgentPiece:
    """One NDJSON line or JSON event: ``{"text": ...}``, ``{"delta": ...}``, a string or a ``function_call``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if value.get("error"):
            error = value["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise AgentError("agent_upstream_error", f"the webhook reported an error: {message}")
        if "function_call" in value:
            return (calls or _Calls()).call(value["function_call"])
        text = value.get("text", value.get("delta"))
        if isinstance(text, str):
            return text
        if text is None and value.get("done") is True:
            return ""
    raise AgentError("agent_bad_response", f"expected {{\"text\": ...}}, got {json.dumps(value)[:120]}")


def _parse(line: str, calls: _Calls) -> AgentPiece:
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise AgentError("agent_bad_response", f"not a JSON line: {line[:120]!r}") from exc
    return json_piece(value, calls)


def _whole_answer(body: Any, calls: _Calls) -> list[AgentPiece]:
    """An ``application/json`` answer: its text, then its ``function_calls``."""
    if body is None:
        return []
    if isinstance(body, dict) and "function_calls" in body:
        listed = body["function_calls"]
        if not isinstance(listed, list):
            raise AgentError("agent_bad_response", "function_calls must be a list")
        text = body.get("text")
        return ([text] if isinstance(text, str) and text else []) + [calls.call(call) for call in listed]
    return [json_piece(body, calls)]


async def stream_text(stream: UpstreamStream) -> AsyncIterator[AgentPiece]:
    """The reply's pieces, in the format its content type names."""
    kind = stream.content_type.lower()
    calls = _Calls()
    if kind in NDJSON_TYPES:
        async for line in stream.lines():
            if line.strip():
                yield _parse(line.strip().lstrip("\x1e"), calls)
    elif kind == "text/event-stream":
        async for data in sse_data(stream.lines()):
            stripped = data.strip()
            if stripped == "[DONE]":
                return
            yield _parse(stripped, calls) if stripped.startswith("{") else data
    elif kind == "application/json":
        for piece in _whole_answer(await stream.json(), calls):
            yield piece
    elif kind in PLAIN_TYPES:
        async for chunk in stream.chunks():
            yield chunk
    else:
        raise AgentError("agent_bad_response", f"unsupported Content-Type {kind!r}; use text/plain, "
                         "application/x-ndjson, text/event-stream or application/json")


class WebhookAgent(Agent):
    name = "webhook"
    speculative = False  # a webhook may act on the turn: only for confirmed turns

    can_call_tools = True

    def __init__(self, endpoint: WebhookEndpoint, policy: UpstreamPolicy) -> None:
        self.endpoint = endpoint
        self.policy = policy

    async def reply(self, history: Sequence[ConversationItem], instructions: str) -> AsyncIterator[str]:
        async for piece in self.respond(AgentRequest(history, instructions)):
            if isinstance(piece, str):
                yield piece

    async def respond(self, request: AgentRequest) -> AsyncIterator[AgentPiece]:
        headers = {"Accept": "text/plain, application/x-ndjson, text/event-stream, application/json"}
        if self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        what = "the webhook agent"
        started = time.monotonic()
        first = True
        payload = turn_payload(self.call_id, self.policy.window.recent(request.history), request.instructions,
                               request)
        failed = failures(what, self.policy, call_id=self.call_id, url=self.endpoint.url)
        async with failed, post_stream(self.endpoint.url, payload, headers=headers, policy=self.policy,
                                       what=what) as stream:
            async for piece in stream_text(stream):
                if piece:
                    if first:
                        first = False
                        logger.info("call %s: webhook first text after %.0f ms", self.call_id,
                                    (time.monotonic() - started) * 1000)
                    yield piece
        logger.debug("call %s: webhook reply streamed in %.0f ms", self.call_id, (time.monotonic() - started) * 1000)
