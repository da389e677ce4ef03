"""Twilio Media Streams messages, parsed once into typed values, and the three the gateway sends.

Twilio → gateway (JSON text, one object a message, ``event`` names it)::

    {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    {"event": "start", "sequenceNumber": "1", "streamSid": "MZ…",
     "start": {"streamSid": "MZ…", "callSid": "CA…", "accountSid": "AC…", "tracks": ["inbound"],
               "customParameters": {"agent": "echo"},
               "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
    {"event": "media", "streamSid": "MZ…", "media": {"track": "inbound", "chunk": "2",
                                                    "timestamp": "20", "payload": "<base64 μ-law>"}}
    {"event": "mark", "streamSid": "MZ…", "mark": {"name": "…"}}     (a mark we sent, played)
    {"event": "dtmf", "streamSid": "MZ…", "dtmf": {"track": "inbound_track", "digit": "5"}}
    {"event": "stop", "streamSid": "MZ…", "stop": {"callSid": "CA…", "accountSid": "AC…"}}

Gateway → Twilio: ``media`` (base64 μ-law), ``mark`` and ``clear``, each with the ``streamSid``.

Anything malformed raises :class:`StreamError`: the socket is closed with its WebSocket close code
and the stable ``reason`` (docs/protocol.md, "Twilio Media Streams"). Unknown events are ignored
(Twilio may add some), and so are fields the gateway does not use.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from gateway.config.telephony import MAX_PARAMETER_CHARS

#: WebSocket close codes (RFC 6455 §7.4.1) the gateway ends a stream with.
NORMAL, UNSUPPORTED_DATA, INVALID_PAYLOAD, POLICY_VIOLATION = 1000, 1003, 1007, 1008
TOO_BIG, TRY_AGAIN_LATER = 1009, 1013
#: The one media format Twilio streams: μ-law at 8 kHz, mono.
MULAW = ("audio/x-mulaw", 8000, 1)
DTMF_DIGITS = frozenset("0123456789*#ABCD")
MAX_CUSTOM_PARAMETERS = 32


class StreamError(Exception):
    """The stream must end: ``code`` is the WebSocket close code, ``reason`` a stable name (≤ 123 bytes)."""

    def __init__(self, code: int, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Connected:
    protocol: str = ""


@dataclass(frozen=True)
class Start:
    stream_sid: str
    call_sid: str
    account_sid: str = ""
    tracks: tuple[str, ...] = ("inbound",)
    custom_parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Media:
    stream_sid: str
    payload: bytes  # μ-law bytes, base64-decoded
    track: str = "inbound"
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class Mark:
    stream_sid: str
    name: str


@dataclass(frozen=True)
class Dtmf:
    stream_sid: str
    digit: str


@dataclass(frozen=True)
class Stop:
    stream_sid: str


@dataclass(frozen=True)
class Other:
    """An event the gateway does not know: ignored."""

    event: str


Message = Connected | Start | Media | Mark | Dtmf | Stop | Other


def parse_message(message: str, *, max_payload_bytes: int) -> Message:
    """One text message from Twilio as a typed value; raises :class:`StreamError`."""
    try:
        raw = json.loads(message)
    except (ValueError, RecursionError) as exc:
        raise StreamError(INVALID_PAYLOAD, "invalid_json", f"not JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("event"), str):
        raise StreamError(INVALID_PAYLOAD, "invalid_message", "a message must be a JSON object with an 'event'")
    event: str = raw["event"]
    match event:
        case "connected":
            return Connected(_text(raw.get("protocol")))
        case "start":
            return _start(raw)
        case "media":
            return _media(raw, max_payload_bytes)
        case "mark":
            return Mark(_sid(raw), _text(_object(raw, "mark").get("name")))
        case "dtmf":
            digit = _object(raw, "dtmf").get("digit")
            if not isinstance(digit, str) or digit.upper() not in DTMF_DIGITS:
                raise StreamError(INVALID_PAYLOAD, "invalid_dtmf", "dtmf.digit must be one of 0-9, *, #, A-D")
            return Dtmf(_sid(raw), digit.upper())
        case "stop":
            return Stop(_sid(raw))
        case _:
            return Other(event[:64])


def _object(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key)
    if not isinstance(value, dict):
        raise StreamError(INVALID_PAYLOAD, "invalid_message", f"a {raw['event']!r} message needs a {key!r} object")
    return value


def _text(value: object, limit: int = 256) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _sid(raw: dict[str, Any]) -> str:
    sid = raw.get("streamSid")
    if not isinstance(sid, str) or not sid or len(sid) > 64:
        raise StreamError(INVALID_PAYLOAD, "invalid_message", f"a {raw['event']!r} message needs its streamSid")
    return sid


def _start(raw: dict[str, Any]) -> Start:
    start = _object(raw, "start")
    sid = start.get("streamSid", raw.get("streamSid"))
    if not isinstance(sid, str) or not sid or len(sid) > 64:
        raise StreamError(INVALID_PAYLOAD, "invalid_message", "start needs a streamSid")
    media_format = start.get("mediaFormat")
    if not isinstance(media_format, dict) or (media_format.get("encoding"), _int(media_format.get("sampleRate")),
                                              _int(media_format.get("channels", 1))) != MULAW:
        raise StreamError(UNSUPPORTED_DATA, "unsupported_media_format",
                          f"the stream must be audio/x-mulaw at 8000 Hz, mono; start says {media_format!r:.200}")
    parameters = start.get("customParameters") or {}
    if not isinstance(parameters, dict) or len(parameters) > MAX_CUSTOM_PARAMETERS or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) + len(v) <= MAX_PARAMETER_CHARS
            for k, v in parameters.items()):
        raise StreamError(INVALID_PAYLOAD, "invalid_custom_parameters",
                          f"customParameters must be at most {MAX_CUSTOM_PARAMETERS} strings "
                          f"of at most {MAX_PARAMETER_CHARS} characters (name and value)")
    tracks = start.get("tracks", ["inbound"])
    return Start(sid, _text(start.get("callSid"), 64), _text(start.get("accountSid"), 64),
                 tuple(t for t in tracks if isinstance(t, str))[:4] if isinstance(tracks, list) else ("inbound",),
                 dict(parameters))


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit() and len(value) < 10:
        return int(value)
    return None


def _media(raw: dict[str, Any], max_payload_bytes: int) -> Media:
    media = _object(raw, "media")
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise StreamError(INVALID_PAYLOAD, "invalid_media", "media.payload must be a base64 string")
    if len(payload) > max_payload_bytes * 4 // 3 + 4:
        raise StreamError(TOO_BIG, "media_too_large", f"a media payload holds at most {max_payload_bytes} bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise StreamError(INVALID_PAYLOAD, "invalid_media", "media.payload is not valid base64") from None
    return Media(_sid(raw), data, _text(media.get("track"), 32) or "inbound", _int(media.get("timestamp")))


# ------------------------------------------------------------------------- outbound

def media_message(stream_sid: str, payload: bytes) -> str:
    return json.dumps({"event": "media", "streamSid": stream_sid,
                       "media": {"payload": base64.b64encode(payload).decode("ascii")}})


def mark_message(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})
