"""What signaling needs from the gateway: place a call, hang one up."""

from __future__ import annotations

from typing import Any, Protocol


class CallService(Protocol):
    async def create_call(self, offer_sdp: str, session: dict[str, Any] | None) -> tuple[str, str]:
        """Admit a call and answer its offer: (call id, answer SDP). Raises GatewayError."""
        ...

    async def hangup(self, call_id: str) -> None:
        """End a call. Raises CallNotFound."""
        ...
