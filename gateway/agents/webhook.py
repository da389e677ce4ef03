"""The webhook agent: POSTs the turn as JSON to a configured URL and speaks what streams back.

Request body::

    {"type": "gateway.turn", "call_id": "rtc_...", "instructions": "...",
     "transcript": "what the caller just said",
     "history": [{"id": "item_...", "role": "user", "text": "...", "truncated": false}, ...]}

``history`` holds the most recent items only (``limits.max_agent_history_items`` and ``_chars``).

The answer may stream in any of these forms, chosen by its ``Content-Type``:

* ``text/plain`` (or none): the body is the text, spoken as it arrives;
* ``application/x-ndjson`` / ``application/jsonl``: one JSON value per line, ``{"text": "..."}``
  (or ``{"delta": "..."}``, or a JSON string); ``{"error": "..."}`` fails the reply;
* ``text/event-stream``: each event's ``data`` is the text, or (when it starts with ``{``) a JSON
  object as in NDJSON; ``[DONE]`` ends it;
* ``application/json``: one ``{"text": "..."}`` for the whole reply.

An empty answer (or ``204``) means the agent chose not to speak.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.agents.base import Agent, AgentError, ConversationItem, last_user_text
from gateway.agents.upstream import UpstreamPolicy, UpstreamStream, failures, post_stream, sse_data

logger = logging.getLogger(__name__)

NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-seq", "application/ndjson")
PLAIN_TYPES = ("text/plain", "application/octet-stream", "")


@dataclass(frozen=True)
class WebhookEndpoint:
    url: str
    token: str = ""

    def __repr__(self) -> str:  # never show the token
        return f"WebhookEndpoint(url={self.url!r})"


def turn_payload(call_id: str, history: Sequence[ConversationItem], instructions: str) -> dict[str, Any]:
    return {
        "type": "gateway.turn",
        "call_id": call_id,
        "instructions": instructions,
        "transcript": last_user_text(history),
        "history": [{"id": item.id, "role": item.role, "text": item.text, "truncated": item.truncated}
                    for item in history],
    }


def json_piece(value: Any) -> str:
    """The text of one NDJSON line or JSON event: ``{"text": ...}``, ``{"delta": ...}`` or a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if value.get("error"):
            error = value["error"]
            message = error.get("message") if isinstance(error, dict) else error
            raise AgentError("agent_upstream_error", f"the webhook reported an error: {message}")
        text = value.get("text", value.get("delta"))
        if isinstance(text, str):
            return text
        if text is None and value.get("done") is True:
            return ""
    raise AgentError("agent_bad_response", f"expected {{\"text\": ...}}, got {json.dumps(value)[:120]}")


def _parse(line: str) -> str:
    try:
        value = json.loads(line)
    except ValueError as exc:
        raise AgentError("agent_bad_response", f"not a JSON line: {line[:120]!r}") from exc
    return json_piece(value)


async def stream_text(stream: UpstreamStream) -> AsyncIterator[str]:
    """The reply's text pieces, in the format its content type names."""
    kind = stream.content_type.lower()
    if kind in NDJSON_TYPES:
        async for line in stream.lines():
            if line.strip():
                yield _parse(line.strip().lstrip("\x1e"))
    elif kind == "text/event-stream":
        async for data in sse_data(stream.lines()):
            stripped = data.strip()
            if stripped == "[DONE]":
                return
            yield _parse(stripped) if stripped.startswith("{") else data
    elif kind == "application/json":
        body = await stream.json()
        yield json_piece(body) if body is not None else ""
    elif kind in PLAIN_TYPES:
        async for chunk in stream.chunks():
            yield chunk
    else:
        raise AgentError("agent_bad_response", f"unsupported Content-Type {kind!r}; use text/plain, "
                         "application/x-ndjson, text/event-stream or application/json")


class WebhookAgent(Agent):
    name = "webhook"
    speculative = False  # a webhook may act on the turn: only for confirmed turns

    def __init__(self, endpoint: WebhookEndpoint, policy: UpstreamPolicy) -> None:
        self.endpoint = endpoint
        self.policy = policy

    async def reply(self, history: Sequence[ConversationItem], instructions: str) -> AsyncIterator[str]:
        headers = {"Accept": "text/plain, application/x-ndjson, text/event-stream, application/json"}
        if self.endpoint.token:
            headers["Authorization"] = f"Bearer {self.endpoint.token}"
        what = "the webhook agent"
        started = time.monotonic()
        first = True
        payload = turn_payload(self.call_id, self.policy.window.recent(history), instructions)
        failed = failures(what, self.policy, call_id=self.call_id, url=self.endpoint.url)
        async with failed, post_stream(self.endpoint.url, payload, headers=headers, policy=self.policy,
                                       what=what) as stream:
            async for text in stream_text(stream):
                if text:
                    if first:
                        first = False
                        logger.info("call %s: webhook first text after %.0f ms", self.call_id,
                                    (time.monotonic() - started) * 1000)
                    yield text
        logger.debug("call %s: webhook reply streamed in %.0f ms", self.call_id, (time.monotonic() - started) * 1000)
