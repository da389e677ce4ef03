"""The call service of a single-process gateway (and of each worker): its registry, plus its sockets.

:class:`LocalCalls` is what signaling talks to (:class:`signaling.service.CallService`): offers,
hang-ups and session checks go to the :class:`~gateway.session.registry.SessionRegistry`;
a WebSocket that signaling has checked (:meth:`LocalCalls.serve_socket`) goes to the handler
registered for its kind — ``realtime`` and ``sideband`` (:mod:`gateway.transports.websocket`),
``twilio`` — which makes the right transport and admits the call with
:meth:`~gateway.session.registry.SessionRegistry.open_call`. This is the one place that knows both
aiohttp's request and the transports: signaling stays HTTP, the transports stay media.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.errors import GatewayError
from gateway.session.registry import SessionRegistry
from signaling.service import SocketRequest

#: Serves one checked WebSocket request of a kind (see :meth:`LocalCalls.add_socket_handler`).
SocketHandler = Callable[[web.Request, SocketRequest], Awaitable[web.StreamResponse]]


class UnsupportedSocket(GatewayError):
    status = 404


class LocalCalls:
    """The calls of this process, for signaling (see the module doc)."""

    def __init__(self, registry: SessionRegistry) -> None:
        self.registry = registry
        self._sockets: dict[str, SocketHandler] = {}

    def add_socket_handler(self, kind: str, handler: SocketHandler) -> None:
        """Serve sockets of ``kind`` (a :class:`~signaling.service.SocketRequest`'s) with ``handler``."""
        self._sockets[kind] = handler

    async def create_call(self, offer_sdp: str, session: dict[str, Any] | None) -> tuple[str, str]:
        return await self.registry.create_call(offer_sdp, session)

    async def hangup(self, call_id: str) -> None:
        await self.registry.hangup(call_id)

    def has_call(self, call_id: str) -> bool:
        return self.registry.has_call(call_id)

    def is_connected(self, call_id: str) -> bool:
        return self.registry.is_connected(call_id)

    def validate_session(self, session: dict[str, Any] | None) -> dict[str, Any] | None:
        return self.registry.validate_session(session)

    async def serve_socket(self, request: web.Request, socket: SocketRequest) -> web.StreamResponse:
        handler = self._sockets.get(socket.kind)
        if handler is None:
            raise UnsupportedSocket("unsupported_socket", f"this gateway serves no {socket.kind!r} sockets")
        return await handler(request, socket)
