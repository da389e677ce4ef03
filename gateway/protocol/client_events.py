"""Parsing and limits for client events arriving on the data channel."""

from __future__ import annotations

import json
import time
from typing import Any


class BadClientEvent(ValueError):
    def __init__(self, code: str, message: str, event_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.event_id = event_id


def parse_client_event(message: object, *, max_bytes: int) -> dict[str, Any]:
    """A data-channel message as an event dict with a string ``type``."""
    if isinstance(message, bytes):
        raise BadClientEvent("invalid_event", "binary messages are not supported; send JSON text")
    if not isinstance(message, str):
        raise BadClientEvent("invalid_event", "unsupported message")
    if len(message.encode("utf-8", "surrogatepass")) > max_bytes:
        raise BadClientEvent("event_too_large", f"events are limited to {max_bytes} bytes")
    try:
        event = json.loads(message)
    except (ValueError, RecursionError) as exc:  # ValueError: JSONDecodeError, or an integer over 4300 digits
        raise BadClientEvent("invalid_json", f"message is not valid JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise BadClientEvent("invalid_event", "an event must be a JSON object")
    event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
    if not isinstance(event.get("type"), str):
        raise BadClientEvent("missing_type", "an event must have a string 'type'", event_id)
    return event


class RateLimiter:
    """Token bucket: ``rate`` events per second with a burst of ``2 × rate``."""

    def __init__(self, rate: int, *, clock: Any = time.monotonic) -> None:
        self._rate = rate
        self._capacity = 2.0 * rate
        self._tokens = self._capacity
        self._clock = clock
        self._last = clock()

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
