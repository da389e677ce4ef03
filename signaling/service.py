"""What signaling needs from the gateway: place a call, hang one up, check a session.

Signaling parses and validates HTTP, hands typed requests to this protocol and
maps its :class:`~gateway.errors.GatewayError` to JSON. Two implementations:
:class:`gateway.session.registry.SessionRegistry` (the calls of this process)
and :class:`gateway.app.workers.WorkerPool` (a front process handing calls to
workers). Neither is imported here: signaling knows no call internals.
"""

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

    def is_connected(self, call_id: str) -> bool:
        """Whether the live call ``call_id`` has connected (ICE and DTLS up); until then it is *pending*, and
        the per-client limits allow only a few of those (``limits.max_pending_calls_per_client``)."""
        ...

    def validate_session(self, session: dict[str, Any] | None) -> dict[str, Any] | None:
        """The session a call placed with ``session`` would start with, without its id (a client secret is
        minted with it). Raises InvalidSessionConfig (``invalid_session``) when ``session`` is not valid.

        None when this service cannot tell yet (a front process, or models still loading: the voices and
        agents are not known); the call checks the session again when it is placed.
        """
        ...


#: The app's call service (a SessionRegistry, or a front process's WorkerPool).
REGISTRY = web.AppKey("registry", CallService)
