"""The Realtime WebSocket (``GET /v1/realtime``): events and audio on one socket, as OpenAI's GA API.

Every client event is one text message, handed to the session and awaited
(:meth:`~gateway.session.transport.TransportListener.on_client_message`): an
``input_audio_buffer.append`` is decoded (:mod:`gateway.transports.event_audio`) and fed before
the next message is read, so a busy session stops the reader and TCP stops the client. The
replies' audio leaves as ``response.output_audio.delta`` events (base64, in
``audio.output.format``), paced by :class:`~gateway.transports.socket_audio.SocketAudio` 0.1 s
ahead of the wall clock, then ``response.output_audio.done`` — before the reply's
``response.done``. The gateway does not know what the client played: a client that stops
playing early says so with ``conversation.item.truncate``.

Bounds: a message is at most :data:`MAX_MESSAGE_BYTES` (an append's bound; other events are
held to ``limits.max_event_bytes`` by the session, ``event_too_large``); a bigger one closes the
socket with 1009 (``message_too_large``). What waits to be written is bounded by
:attr:`WebSocketOptions.max_queued_bytes` (about 20 s of 24 kHz audio): a client that stops
reading is closed with 1008 (``client_too_slow``), so it cannot make the gateway buffer its call.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, WSMsgType, web

from engines.base import FloatArray
from gateway.aio import TaskSet
from gateway.protocol.server_events import Event, new_id
from gateway.protocol.session_settings import AudioFormat
from gateway.session.session import MAX_APPEND_BYTES
from gateway.transports.base import TransportListener
from gateway.transports.event_audio import EventAudioCodec
from gateway.transports.socket_audio import SocketAudio, SocketAudioOptions
from gateway.transports.socket_writer import SocketWriter
from media.outbound import PlayoutResult
from media.pcm import Int16Array

logger = logging.getLogger(__name__)

#: The largest message read: an append's bound, plus room for its JSON around the audio.
MAX_MESSAGE_BYTES = MAX_APPEND_BYTES + 4096
MAX_TRACKED_RESPONSES = 8  # response id → item id, for the audio events of the replies still playing


@dataclass(frozen=True)
class WebSocketOptions:
    audio: SocketAudioOptions = field(default_factory=SocketAudioOptions)
    max_queued_bytes: int = 2 * 1024 * 1024
    heartbeat_seconds: float = 5.0  # a ping every 5 s; no pong within 2.5 s closes the socket (a vanished client)
    close_timeout_seconds: float = 5.0


class WebSocketTransport:
    """One call on a Realtime WebSocket (see the module doc): a :class:`~gateway.transports.base.Transport`."""

    def __init__(self, call_id: str, options: WebSocketOptions | None = None, *, protocol: str | None = None) -> None:
        self.call_id = call_id
        self._options = options or WebSocketOptions()
        self.ws = web.WebSocketResponse(protocols=(protocol,) if protocol else (), max_msg_size=MAX_MESSAGE_BYTES,
                                        heartbeat=self._options.heartbeat_seconds, autoping=True)
        self.codec = EventAudioCodec()
        self.audio = SocketAudio(self.codec.output_rate, self._options.audio, before_finished=self._audio_done)
        self._listener: TransportListener | None = None
        self._tasks: TaskSet | None = None
        self._writer = SocketWriter(self.ws, max_bytes=self._options.max_queued_bytes, on_overflow=self._too_slow,
                                    label=f"call {call_id}")
        self._items: OrderedDict[str, str] = OrderedDict()  # response id → its audio item id
        self._open = False
        self._opened_at: float | None = None
        self._closed = False
        self.messages_received = 0
        self.close_reason: str | None = None
        #: Also told the audio events this transport makes (the call's sidebands hear them: gateway/app/realtime.py).
        self.mirror: Callable[[Event], None] | None = None

    @property
    def audio_out(self) -> SocketAudio:
        return self.audio

    @property
    def event_audio(self) -> WebSocketTransport:
        return self  # set_formats, decode

    def set_formats(self, input_format: AudioFormat, output_format: AudioFormat) -> None:
        self.codec.set_formats(input_format, output_format)
        self.audio.set_wire_rate(self.codec.output_rate)

    def decode(self, data: bytes) -> FloatArray:
        return self.codec.decode(data)

    @property
    def events_open(self) -> bool:
        return self._open and not self.ws.closed

    def attach(self, listener: TransportListener, tasks: TaskSet) -> None:
        self._listener, self._tasks = listener, tasks

    def _attached(self) -> tuple[TransportListener, TaskSet]:
        if self._listener is None or self._tasks is None:
            raise RuntimeError(f"call {self.call_id}: the transport has no session attached")
        return self._listener, self._tasks

    async def accept(self, request: web.Request) -> None:
        """Upgrade ``request`` (the call was admitted), then let events and audio flow."""
        listener, tasks = self._attached()
        await self.ws.prepare(request)
        self._open, self._opened_at = True, time.monotonic()
        tasks.create_task(self._writer.run(), name=f"{self.call_id} ws writer")
        tasks.create_task(self.audio.run(self._send_audio), name=f"{self.call_id} ws audio")
        listener.on_events_open()
        listener.on_connected()

    async def serve(self) -> None:
        """Read the client's messages until the socket closes (the request handler awaits this)."""
        listener, _ = self._attached()
        try:
            async for message in self.ws:
                self.messages_received += 1
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await listener.on_client_message(message.data)
                elif message.type == WSMsgType.ERROR:
                    break
        finally:
            if not self._closed:
                reason = "message_too_large" if self.ws.close_code == WSCloseCode.MESSAGE_TOO_BIG else None
                listener.on_lost(reason or self.close_reason or "connection_closed")

    # ---------------------------------------------------------------- events

    def send_event(self, event: Event) -> None:
        if event["type"] == "response.output_item.added":
            self._items[event["response_id"]] = event["item"]["id"]
            while len(self._items) > MAX_TRACKED_RESPONSES:
                self._items.popitem(last=False)
        self._enqueue(json.dumps(event))

    def _enqueue(self, text: str) -> None:
        if not self._closed and self._open:
            self._writer.send(text)

    def _too_slow(self) -> None:
        self.close_reason = "client_too_slow"
        self._attached()[0].on_lost("client_too_slow")

    async def flush_events(self) -> None:
        await self._writer.flush()

    async def packets_received(self) -> int:
        """Messages received, plus one per half second the socket has stayed open: a client that only listens
        is alive while it answers the heartbeat's pings (aiohttp closes the socket when a pong is missing, and
        the call ends then), so the session's media watchdog must not end it for sending nothing."""
        if self.ws.closed or self._opened_at is None:
            return self.messages_received
        return self.messages_received + int((time.monotonic() - self._opened_at) * 2)

    # ----------------------------------------------------------------- audio

    def _send_audio(self, tag: str, samples: Int16Array) -> None:
        item_id = self._items.get(tag)
        if item_id is None:
            return  # not a response's audio (none is pushed without one)
        self._send_own({
            "type": "response.output_audio.delta", "event_id": new_id("event"), "response_id": tag,
            "item_id": item_id, "output_index": 0, "content_index": 0,
            "delta": base64.b64encode(self.codec.encode(samples)).decode("ascii"),
        })

    def _audio_done(self, result: PlayoutResult) -> None:
        item_id = self._items.pop(result.tag, None)
        if item_id is not None:
            self._send_own({"type": "response.output_audio.done", "event_id": new_id("event"),
                            "response_id": result.tag, "item_id": item_id, "output_index": 0, "content_index": 0})

    def _send_own(self, event: Event) -> None:
        self._enqueue(json.dumps(event))
        if self.mirror is not None:
            self.mirror(event)

    # ----------------------------------------------------------------- close

    async def close(self) -> None:
        """Stop the audio, send what is queued (bounded) and close the socket. Safe twice."""
        if self._closed:
            return
        self._closed = True
        self.audio.stop()
        if not self._open:  # never upgraded (the call was refused while setting up): nothing to close
            return
        code = WSCloseCode.POLICY_VIOLATION if self.close_reason == "client_too_slow" else WSCloseCode.OK
        try:
            async with asyncio.timeout(self._options.close_timeout_seconds):
                if self.close_reason is None:
                    await self.flush_events()
                await self.ws.close(code=code, message=(self.close_reason or "").encode())
        except (TimeoutError, ConnectionError):
            logger.info("call %s: the socket did not close cleanly", self.call_id)
