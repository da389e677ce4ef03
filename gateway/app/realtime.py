"""The handlers of ``realtime`` and ``sideband`` sockets (:class:`gateway.app.sockets.LocalCalls` calls them).

``realtime``: a new call on a :class:`~gateway.transports.websocket.WebSocketTransport`, admitted
by the registry like an offer (``open_call``), the socket upgraded only once admitted (so a full
gateway answers ``503`` JSON), then served until it closes. ``sideband``: the live call's
:class:`~gateway.transports.sideband.SidebandSocket` (an unknown call is ``404``, a fifth sideband
``409``).
"""

from __future__ import annotations

from aiohttp import web

from gateway.app.sockets import LocalCalls
from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.session.registry import SessionRegistry
from gateway.session.sideband import TooManySidebands
from gateway.transports.sideband import SidebandSocket
from gateway.transports.websocket import WebSocketOptions, WebSocketTransport
from signaling.service import SocketRequest


class TooManyAttached(GatewayError):
    status = 409


def add_realtime_sockets(calls: LocalCalls, registry: SessionRegistry, config: GatewayConfig) -> None:
    options = WebSocketOptions()

    async def serve_realtime(request: web.Request, socket: SocketRequest) -> web.StreamResponse:
        made: list[WebSocketTransport] = []

        def make(call_id: str) -> WebSocketTransport:
            made.append(WebSocketTransport(call_id, options, protocol=socket.protocol))
            return made[0]

        async def accept(transport: WebSocketTransport) -> None:
            await transport.accept(request)

        call = await registry.open_call(make, socket.session, setup=accept)
        if socket.admitted is not None:
            socket.admitted(call.id)
        transport = made[0]
        transport.mirror = call.sidebands.send  # the audio events too: a sideband hears everything
        await transport.serve()
        return transport.ws

    async def serve_sideband(request: web.Request, socket: SocketRequest) -> web.StreamResponse:
        assert socket.call_id is not None  # SocketRequest checks it
        sideband = SidebandSocket(registry.get(socket.call_id), max_event_bytes=config.limits.max_event_bytes,
                                  protocol=socket.protocol)
        try:
            sideband.attach()
        except TooManySidebands as exc:
            raise TooManyAttached("too_many_sidebands", str(exc)) from exc
        return await sideband.serve(request)

    calls.add_socket_handler("realtime", serve_realtime)
    calls.add_socket_handler("sideband", serve_sideband)
