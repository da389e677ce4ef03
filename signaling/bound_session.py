"""The session a client secret binds: what is kept of it, and which fields the browser may not change.

A server that mints a token decides what the call does; the browser that
places the call must not undo it. Of the request's ``session`` the store keeps
only the fields a session has (:data:`FIELDS`: ``instructions``, ``agent``,
``voice``, ``turn_detection``, ``tools``, ``tool_choice``), as validated by the call service, as one
compact JSON ``bytes`` of at most :data:`MAX_BOUND_BYTES` — not the parsed
request, whose 64 KiB of JSON made some 1.6 MB of Python objects per token.

**Pinned fields** (an extension, docs/protocol.md): ``session.gateway.pinned``
lists the fields the call may not change, neither in the offer's ``session``
part (its values for them are dropped: the token's stand) nor by
``session.update`` during the call (``error`` ``session_field_pinned``).
Without it, ``instructions`` and ``agent`` are pinned when the token's session
sets them; ``"pinned": []`` pins nothing (OpenAI's behaviour).
"""

from __future__ import annotations

import json
from typing import Any

from signaling.errors import ApiError

#: The session fields a token can bind and pin, and the places in a session object that set each (GA first).
FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "instructions": (("instructions",),),
    "agent": (("agent",),),
    "voice": (("audio", "output", "voice"), ("voice",)),
    "turn_detection": (("audio", "input", "turn_detection"), ("turn_detection",)),
    "tools": (("tools",),),  # the app's server may bind the call's tools (and pin them)
    "tool_choice": (("tool_choice",),),
}
DEFAULT_PINNED = ("instructions", "agent")
#: The most a token's bound session may take: 16,000 characters of instructions (the session limit) in
#: UTF-8 at up to 4 bytes each, and the other fields.
MAX_BOUND_BYTES = 65 * 1024


def _get(session: dict[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    value: Any = session
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return False, None
        value = value[key]
    return True, value


def _put(session: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        session = session.setdefault(key, {})
    session[path[-1]] = value


def _without(session: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """``session`` without the value at ``path`` (the objects on the path copied, the rest shared)."""
    key, rest = path[0], path[1:]
    if key not in session or (rest and not isinstance(session[key], dict)):
        return session
    copy = dict(session)
    if rest:
        copy[key] = _without(session[key], rest)
    else:
        del copy[key]
    return copy


def sets(session: dict[str, Any], name: str) -> bool:
    """Whether ``session`` sets the field ``name``."""
    return any(_get(session, path)[0] for path in FIELDS[name])


def pinned_fields(session: dict[str, Any] | None) -> list[str]:
    """``session.gateway.pinned`` as given (sorted), or the default; 400 ``invalid_session`` when malformed."""
    if session is None:
        return []
    found, pinned = _get(session, ("gateway", "pinned"))
    if not found:
        return [name for name in DEFAULT_PINNED if sets(session, name)]
    if not isinstance(pinned, list) or not all(isinstance(name, str) and name in FIELDS for name in pinned):
        raise ApiError(400, "invalid_session", f"session.gateway.pinned must be a list of {', '.join(FIELDS)}")
    return sorted(set(pinned))


def with_pins(session: dict[str, Any], pinned: list[str]) -> dict[str, Any]:
    """``session`` with ``gateway.pinned`` set to ``pinned`` (a copy)."""
    gateway = session.get("gateway")
    return {**session, "gateway": {**(gateway if isinstance(gateway, dict) else {}), "pinned": pinned}}


def compact(session: dict[str, Any], effective: dict[str, Any] | None) -> bytes | None:
    """What a token keeps of ``session``: the fields it sets — their validated values from ``effective`` (the
    call service's answer), or as given when the service cannot tell yet — and its pins, as compact JSON."""
    kept: dict[str, Any] = {}
    for name, paths in FIELDS.items():
        if effective is not None and sets(session, name):
            _put(kept, paths[0], _get(effective, paths[0])[1])
            continue
        for path in paths:
            found, value = _get(session, path)
            if found:
                _put(kept, path, value)
    pinned = pinned_fields(session)
    if pinned:
        kept["gateway"] = {"pinned": pinned}
    if not kept:
        return None
    data = json.dumps(kept, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    if len(data) > MAX_BOUND_BYTES:
        raise ApiError(400, "invalid_session", f"the session to bind is larger than {MAX_BOUND_BYTES} bytes")
    return data


def expand(data: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(data.decode("utf-8", "surrogatepass"))
    return value


def without_pinned(update: dict[str, Any], pinned: list[str]) -> dict[str, Any]:
    """``update`` (the offer's session) without the fields in ``pinned``, nor any ``gateway.pinned`` of its own
    (the caller adds the token's pins)."""
    for path in [path for name in pinned for path in FIELDS[name]] + [("gateway", "pinned")]:
        update = _without(update, path)
    return update
