"""What signaling needs from the gateway: place a call, hang one up, check a session, serve a socket.

Signaling parses and validates HTTP, hands typed requests to this protocol and
maps its :class:`~gateway.errors.GatewayError` to JSON. Two implementations:
:class:`gateway.app.sockets.LocalCalls` (the calls of this process, on its
:class:`~gateway.session.registry.SessionRegistry`) and
:class:`gateway.app.workers.WorkerPool` (a front process handing calls to
workers). Neither is imported here: signaling knows no call internals.

*Sockets.* A route that upgrades to a WebSocket (``GET /v1/realtime``, Twilio's media
stream) does the HTTP part itself — auth, the upgrade's checks, JSON errors before the
upgrade — and then hands the request to :meth:`CallService.serve_socket` with a
:class:`SocketRequest` saying what the socket is for. The service admits the call (or
finds it, for a sideband), upgrades the request and serves it until the socket closes;
a refusal raised before the upgrade is answered as JSON like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web


@dataclass(frozen=True)
class SocketRequest:
    """What a WebSocket is for, once signaling has checked the HTTP request.

    ``kind``: ``"realtime"`` (a new call on the Realtime WebSocket), ``"sideband"`` (attach to the live
    call ``call_id``), ``"twilio"`` (a Twilio media stream). ``session``: the session the call starts
    with (a client secret's bound session), ``protocol``: the subprotocol to answer the upgrade with (the
    browser form's ``realtime``), ``admitted``: told the new call's id once it is admitted (a client
    secret is used then, and the per-client limits count the call).
    """

    kind: str
    session: dict[str, Any] | None = None
    call_id: str | None = None
    protocol: str | None = None
    admitted: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        if self.kind == "sideband" and not self.call_id:
            raise ValueError("a sideband socket needs the call_id it attaches to")


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

    async def serve_socket(self, request: web.Request, socket: SocketRequest) -> web.StreamResponse:
        """Admit (or find) the call ``socket`` is for, upgrade ``request`` and serve it until it closes.

        Raises GatewayError before the upgrade (``capacity``, ``call_not_found``, ``unsupported_socket``):
        signaling answers JSON. After the upgrade, failures are WebSocket close codes."""
        ...


#: The app's call service (a SessionRegistry, or a front process's WorkerPool).
REGISTRY = web.AppKey("registry", CallService)
