"""What signaling needs from the gateway: place a call, hang one up."""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web


class CallService(Protocol):
    async def create_call(self, offer_sdp: str, session: dict[str, Any] | None) -> tuple[str, str]:
        """Admit a call and answer its offer: (call id, answer SDP). Raises GatewayError."""
        ...

    async def hangup(self, call_id: str) -> None:
        """End a call. Raises CallNotFound."""
        ...

    def has_call(self, call_id: str) -> bool:
        """Whether the call ``call_id`` is live (per-client limits and hang-up tokens ask)."""
        ...


#: The app's call service (a SessionRegistry, or a front process's WorkerPool).
REGISTRY = web.AppKey("registry", CallService)
