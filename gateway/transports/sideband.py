"""A sideband socket: the app's server attached to a live call (see :mod:`gateway.session.sideband`).

Not a transport (it carries no audio and does not end the call): a WebSocket on which the
call's server events go out (bounded by a :class:`~gateway.transports.socket_writer.SocketWriter`;
a sideband that stops reading is closed with 1008 and the call goes on) and the server's client
events come in. It opens with a ``session.created`` holding the call's session as it is now, so an
SDK that waits for one works unchanged. When the call ends, the socket is closed with 1000 after
the call's last events (``gateway.session.ended`` included).
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import WSCloseCode, WSMsgType, web

from gateway.protocol import server_events as events
from gateway.protocol.server_events import Event
from gateway.session.session import RealtimeSession
from gateway.session.sideband import Sideband
from gateway.transports.socket_writer import SocketWriter

logger = logging.getLogger(__name__)

MESSAGE_MARGIN = 16 * 1024  # a message a bit over limits.max_event_bytes gets event_too_large, not a close
MAX_QUEUED_BYTES = 4 * 1024 * 1024
CLOSE_TIMEOUT_SECONDS = 5.0


class SidebandSocket:
    def __init__(self, call: RealtimeSession, *, max_event_bytes: int, protocol: str | None = None) -> None:
        self.call = call
        self.ws = web.WebSocketResponse(protocols=(protocol,) if protocol else (),
                                        max_msg_size=max_event_bytes + MESSAGE_MARGIN, heartbeat=20.0)
        self._writer = SocketWriter(self.ws, max_bytes=MAX_QUEUED_BYTES, on_overflow=self._too_slow,
                                    label=f"call {call.id} sideband")
        self._sideband: Sideband | None = None
        self._ended = asyncio.Event()
        self._close_code = WSCloseCode.OK

    def attach(self) -> None:
        """Attach to the call (before the upgrade: TooManySidebands is still an HTTP answer)."""
        self._sideband = self.call.sidebands.attach(self._send, on_detached=self._ended.set)

    async def serve(self, request: web.Request) -> web.WebSocketResponse:
        sideband = self._sideband
        if sideband is None:
            raise RuntimeError("attach() first")
        try:
            await self.ws.prepare(request)
            self._send(events.session_created(self.call.session_dict()))
            writer = asyncio.create_task(self._writer.run(), name=f"{self.call.id} sideband writer")
            closer = asyncio.create_task(self._close_when_ended(), name=f"{self.call.id} sideband close")
            try:
                async for message in self.ws:
                    if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                        sideband.receive(message.data)
            finally:
                sideband.detach()
                await closer
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
        finally:
            sideband.detach()
        return self.ws

    def _send(self, event: Event) -> None:
        if not self.ws.closed:
            self._writer.send(json.dumps(event))

    def _too_slow(self) -> None:
        self._close_code = WSCloseCode.POLICY_VIOLATION
        self._ended.set()

    async def _close_when_ended(self) -> None:
        await self._ended.wait()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
                if self._close_code == WSCloseCode.OK:
                    await self._writer.flush()
                await self.ws.close(code=self._close_code)
        except (TimeoutError, ConnectionError):
            logger.info("call %s: a sideband socket did not close cleanly", self.call.id)
