"""A fake CallService: signaling (and a front's WorkerPool) tested without engines or calls."""

from __future__ import annotations

from typing import Any

from gateway.errors import InvalidSessionConfig
from gateway.protocol.server_events import new_call_id


class FakeCalls:
    """A CallService that answers every offer with the offer, and checks sessions as told."""

    def __init__(self, checked: dict[str, Any] | None = None, invalid: str | None = None) -> None:
        self.checked, self.invalid = checked, invalid
        self.calls: dict[str, dict[str, Any] | None] = {}

    async def create_call(self, offer_sdp: str, session: dict[str, Any] | None) -> tuple[str, str]:
        call_id = new_call_id()
        self.calls[call_id] = session
        return call_id, offer_sdp

    async def hangup(self, call_id: str) -> None:
        del self.calls[call_id]

    def has_call(self, call_id: str) -> bool:
        return call_id in self.calls

    def is_connected(self, call_id: str) -> bool:
        return call_id in self.calls  # a fake call connects at once

    def validate_session(self, session: dict[str, Any] | None) -> dict[str, Any] | None:
        if self.invalid is not None:
            raise InvalidSessionConfig("invalid_session", self.invalid)
        return self.checked
