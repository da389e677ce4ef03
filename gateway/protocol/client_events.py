"""Client events on the ``oai-events`` channel, parsed once into typed values.

:func:`parse_client_event` turns one raw message into one of the frozen
dataclasses below, or raises :class:`BadClientEvent` with a stable ``code``
(docs/protocol.md, "error"). Everything that can be checked without the
session's state is checked here; what depends on it (is a response active?
does the item exist? is the voice installed?) is the session's business.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from gateway.protocol.responses import (
    DEFAULT_PARAMS,
    ClientFunctionCall,
    ClientFunctionOutput,
    ResponseParams,
    parse_item_payload,
    parse_response_params,
)
from gateway.protocol.server_events import new_id
from gateway.protocol.tools import InvalidTool

Role = Literal["user", "assistant", "system"]
ROLES: tuple[Role, ...] = ("user", "assistant", "system")
TEXT_PARTS = ("input_text", "output_text", "text")
STREAM_NOT_FOUND = ("no such streamed response; open one with response.create "
                    "and \"response\": {\"text_stream\": true}")


class BadClientEvent(ValueError):
    """A client event refused with ``code``; ``event_id`` (the client's own) and ``param`` go back with it."""

    def __init__(self, code: str, message: str, event_id: str | None = None, *, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.event_id = event_id
        self.param = param


@dataclass(frozen=True)
class ClientItem:
    """A message item the client adds (``conversation.item.create``): text only."""

    id: str
    role: Role
    text: str

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("an item needs an id")
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}")


@dataclass(frozen=True)
class SessionUpdate:
    """``session.update``: ``session`` is checked against the live voices and agents by the session."""

    session: dict[str, Any]
    event_id: str | None = None


@dataclass(frozen=True)
class InputAudioBufferClear:
    event_id: str | None = None


@dataclass(frozen=True)
class InputAudioBufferAppend:
    """``input_audio_buffer.append``: ``audio`` is the base64-decoded bytes, in the session's input format."""

    audio: bytes
    event_id: str | None = None


@dataclass(frozen=True)
class InputAudioBufferCommit:
    event_id: str | None = None


@dataclass(frozen=True)
class ResponseCancel:
    event_id: str | None = None


@dataclass(frozen=True)
class OutputAudioBufferClear:
    event_id: str | None = None


@dataclass(frozen=True)
class ConversationItemCreate:
    item: ClientItem | ClientFunctionCall | ClientFunctionOutput
    event_id: str | None = None


@dataclass(frozen=True)
class ConversationItemDelete:
    item_id: str
    event_id: str | None = None


@dataclass(frozen=True)
class ConversationItemRetrieve:
    item_id: str
    event_id: str | None = None


@dataclass(frozen=True)
class ConversationItemTruncate:
    """``conversation.item.truncate``: the client played the item's audio only up to ``audio_end_ms``."""

    item_id: str
    audio_end_ms: int
    event_id: str | None = None


@dataclass(frozen=True)
class ResponseCreate:
    """``response.create``; ``text_stream`` (extension): the client streams the response's text itself."""

    text_stream: bool = False
    event_id: str | None = None
    params: ResponseParams = DEFAULT_PARAMS


@dataclass(frozen=True)
class GatewayResponseTextDelta:
    """``gateway.response.text.delta``. ``response_id`` None: the latest streamed response.

    ``delta`` is None when the client sent no string: refused (``invalid_value``) only once the
    response is known to be live, so that text for an ended response is dropped silently as before.
    """

    response_id: str | None
    delta: str | None
    event_id: str | None = None


@dataclass(frozen=True)
class GatewayResponseTextDone:
    """``gateway.response.text.done``. ``response_id`` None: the latest streamed response."""

    response_id: str | None
    event_id: str | None = None


ClientEvent = (
    SessionUpdate | InputAudioBufferAppend | InputAudioBufferClear | InputAudioBufferCommit | ResponseCancel
    | OutputAudioBufferClear | ConversationItemCreate | ConversationItemRetrieve | ConversationItemTruncate
    | ConversationItemDelete | ResponseCreate
    | GatewayResponseTextDelta | GatewayResponseTextDone
)


def parse_client_event(message: object, *, max_bytes: int, max_audio_bytes: int = 0) -> ClientEvent:
    """One client message as a typed event; raises :class:`BadClientEvent`.

    Events are limited to ``max_bytes``; an ``input_audio_buffer.append`` may be as large as
    ``max_audio_bytes`` when that is larger (a socket carrying audio in events)."""
    raw = _decode(message, max(max_bytes, max_audio_bytes))
    event_id = raw.get("event_id") if isinstance(raw.get("event_id"), str) else None
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise BadClientEvent("missing_type", "an event must have a string 'type'", event_id)
    if kind != "input_audio_buffer.append" and max_audio_bytes > max_bytes and _size(message) > max_bytes:
        raise BadClientEvent("event_too_large", f"events are limited to {max_bytes} bytes", event_id)
    parser = _PARSERS.get(kind)
    if parser is None:
        raise BadClientEvent("unknown_event", f"unknown event type {kind!r}", event_id)
    return parser(raw, event_id)


def _decode(message: object, max_bytes: int) -> dict[str, Any]:
    """The JSON object a message holds."""
    if isinstance(message, bytes):
        raise BadClientEvent("invalid_event", "binary messages are not supported; send JSON text")
    if not isinstance(message, str):
        raise BadClientEvent("invalid_event", "unsupported message")
    if _size(message) > max_bytes:
        raise BadClientEvent("event_too_large", f"events are limited to {max_bytes} bytes")
    try:
        event = json.loads(message)
    except (ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, or an integer over 4300 digits
        raise BadClientEvent("invalid_json", f"message is not valid JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise BadClientEvent("invalid_event", "an event must be a JSON object")
    return event


def _size(message: object) -> int:
    return len(message.encode("utf-8", "surrogatepass")) if isinstance(message, str) else 0


def _append(raw: dict[str, Any], event_id: str | None) -> InputAudioBufferAppend:
    audio = raw.get("audio")
    if not isinstance(audio, str):
        raise BadClientEvent("invalid_value", "audio: must be a base64 string", event_id, param="audio")
    try:
        data = binascii.a2b_base64(audio, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise BadClientEvent("invalid_audio", f"audio is not valid base64: {exc}", event_id, param="audio") from exc
    return InputAudioBufferAppend(data, event_id)


def _session_update(raw: dict[str, Any], event_id: str | None) -> SessionUpdate:
    session = raw.get("session")
    if not isinstance(session, dict):
        raise BadClientEvent("invalid_value", "session: must be an object", event_id, param="session")
    return SessionUpdate(session, event_id)


def _item_create(raw: dict[str, Any], event_id: str | None) -> ConversationItemCreate:
    item = raw.get("item")
    if isinstance(item, dict) and item.get("type") in ("function_call", "function_call_output"):
        try:
            return ConversationItemCreate(parse_item_payload(item, "item", None), event_id)
        except InvalidTool as exc:
            raise BadClientEvent("invalid_item", str(exc), event_id, param=exc.param) from exc
    return ConversationItemCreate(parse_item(item, event_id), event_id)


def _item_delete(raw: dict[str, Any], event_id: str | None) -> ConversationItemDelete:
    item_id = raw.get("item_id")
    if not isinstance(item_id, str):
        raise BadClientEvent("item_not_found", f"no item with id {item_id!r}", event_id)
    return ConversationItemDelete(item_id, event_id)


def parse_item(item: Any, event_id: str | None) -> ClientItem:
    """The text message a ``conversation.item.create`` adds (an id is made up when it has none)."""
    if not isinstance(item, dict) or item.get("type", "message") != "message":
        raise BadClientEvent("invalid_item", "item must be an object of type 'message'", event_id)
    role = item.get("role")
    if role not in ROLES:
        raise BadClientEvent("invalid_item", "item.role must be 'user', 'assistant' or 'system'", event_id)
    content = item.get("content")
    if not isinstance(content, list) or not content:
        raise BadClientEvent("invalid_item", "item.content must be a non-empty list", event_id)
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in TEXT_PARTS:
            raise BadClientEvent("invalid_item", "content parts must be text ('input_text', 'output_text', 'text')",
                                 event_id)
        if not isinstance(part.get("text"), str):
            raise BadClientEvent("invalid_item", "content part text must be a string", event_id)
        texts.append(part["text"])
    item_id = str(item["id"]) if isinstance(item.get("id"), str) and item["id"] else new_id("item")
    return ClientItem(item_id, role, " ".join(texts))


def _item_retrieve(raw: dict[str, Any], event_id: str | None) -> ConversationItemRetrieve:
    item_id = raw.get("item_id")
    if not isinstance(item_id, str):  # no item has such an id
        raise BadClientEvent("item_not_found", f"no item with id {item_id!r}", event_id)
    return ConversationItemRetrieve(item_id, event_id)


def _item_truncate(raw: dict[str, Any], event_id: str | None) -> ConversationItemTruncate:
    item_id, end = raw.get("item_id"), raw.get("audio_end_ms")
    if not isinstance(item_id, str):
        raise BadClientEvent("item_not_found", f"no item with id {item_id!r}", event_id, param="item_id")
    if isinstance(end, bool) or not isinstance(end, int) or end < 0:
        raise BadClientEvent("invalid_value", "audio_end_ms must be a whole number of milliseconds >= 0", event_id,
                             param="audio_end_ms")
    if raw.get("content_index", 0) != 0:
        raise BadClientEvent("invalid_value", "content_index must be 0 (an item has one content part)", event_id,
                             param="content_index")
    return ConversationItemTruncate(item_id, end, event_id)


def _response_create(raw: dict[str, Any], event_id: str | None) -> ResponseCreate:
    response = raw.get("response", {})
    flag = response.get("text_stream", False) if isinstance(response, dict) else None
    if not isinstance(flag, bool):
        raise BadClientEvent("invalid_value", "response must be an object and response.text_stream a boolean",
                             event_id)
    try:
        params = parse_response_params(response, lambda item: parse_item(item, event_id))
    except InvalidTool as exc:
        raise BadClientEvent("invalid_value", str(exc), event_id, param=exc.param) from exc
    return ResponseCreate(flag, event_id, params)


def _stream_target(raw: dict[str, Any], event_id: str | None) -> str | None:
    """The streamed response a text event is for; None: the latest one."""
    if "response_id" not in raw:
        return None
    response_id = raw["response_id"]
    if not isinstance(response_id, str):  # matches no response (null included)
        raise BadClientEvent("response_not_found", STREAM_NOT_FOUND, event_id)
    return response_id


def _text_delta(raw: dict[str, Any], event_id: str | None) -> GatewayResponseTextDelta:
    delta = raw.get("delta")
    return GatewayResponseTextDelta(_stream_target(raw, event_id), delta if isinstance(delta, str) else None,
                                    event_id)


def _text_done(raw: dict[str, Any], event_id: str | None) -> GatewayResponseTextDone:
    return GatewayResponseTextDone(_stream_target(raw, event_id), event_id)


_PARSERS: dict[str, Callable[[dict[str, Any], str | None], ClientEvent]] = {
    "session.update": _session_update,
    "input_audio_buffer.append": _append,
    "input_audio_buffer.clear": lambda _raw, event_id: InputAudioBufferClear(event_id),
    "input_audio_buffer.commit": lambda _raw, event_id: InputAudioBufferCommit(event_id),
    "response.cancel": lambda _raw, event_id: ResponseCancel(event_id),
    "output_audio_buffer.clear": lambda _raw, event_id: OutputAudioBufferClear(event_id),
    "conversation.item.create": _item_create,
    "conversation.item.retrieve": _item_retrieve,
    "conversation.item.delete": _item_delete,
    "conversation.item.truncate": _item_truncate,
    "response.create": _response_create,
    "gateway.response.text.delta": _text_delta,
    "gateway.response.text.done": _text_done,
}
