"""Phone calls: Twilio's bidirectional Media Streams (``<Connect><Stream>``) as a transport.

Signaling has checked the upgrade's ``X-Twilio-Signature`` (:mod:`signaling.twilio`);
:func:`serve_twilio_stream` then upgrades, waits for Twilio's ``connected`` and ``start``
(``telephony.start_timeout_seconds``), admits the call with the session its
``customParameters`` choose (:meth:`~gateway.config.TelephonyConfig.session_for`), and reads the
stream until it stops:

* ``media`` — base64 μ-law at 8 kHz — is bounded by real time (a
  :class:`~media.budget.RealTimeGate`: audio beyond ``limits.max_audio_lead_seconds`` ahead of the
  wall clock is dropped before it is decoded, and ``limits.max_dropped_audio_seconds`` of it ends the
  call, ``audio_too_fast``), decoded and resampled to 16 kHz (:mod:`media.g711`) and fed to the session;
* ``mark`` says what the caller has heard (:mod:`gateway.transports.twilio_audio`), ``dtmf`` reaches
  the session as ``input_audio_buffer.dtmf_event_received``, ``stop`` is the caller hanging up.

The replies go back as ``media``, ``mark`` and, on barge-in or when speech pauses a reply, ``clear``
(:class:`TwilioAudio`: a resume sends again what the clear dropped unheard).
Twilio reads none of the Realtime server events: they are counted and dropped here (a sideband
client sees them). Phone audio comes without the browser's echo cancellation: on a speakerphone the
gateway can hear its own voice (docs/protocol.md says what that means for barge-in).

Everything wrong with the stream closes it with a WebSocket close code and a stable reason
(:class:`~gateway.transports.twilio_messages.StreamError`; docs/protocol.md lists them); one call's
stream never affects another's.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

from aiohttp import WSMsgType, web

from engines.base import FloatArray
from gateway.aio import TaskSet
from gateway.config import GatewayConfig
from gateway.config.telephony import ParameterNotAllowed
from gateway.errors import GatewayError
from gateway.protocol.server_events import CALL_ID_PREFIX, Event
from gateway.session.registry import SessionRegistry
from gateway.transports.base import TransportListener
from gateway.transports.socket_audio import SocketAudioOptions
from gateway.transports.twilio_audio import StreamWriter, TwilioAudio
from gateway.transports.twilio_messages import (
    INVALID_PAYLOAD,
    NORMAL,
    POLICY_VIOLATION,
    TOO_BIG,
    TRY_AGAIN_LATER,
    UNSUPPORTED_DATA,
    Connected,
    Dtmf,
    Mark,
    Media,
    Message,
    Other,
    Start,
    Stop,
    StreamError,
    parse_message,
)
from media.budget import AudioTooFast, RealTimeBudget, RealTimeGate
from media.g711 import RATE as WIRE_RATE
from media.g711 import G711Decoder

logger = logging.getLogger(__name__)

_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")

#: How long a close waits for Twilio's closing handshake.
CLOSE_TIMEOUT_SECONDS = 2.0


class TwilioTransport:
    """One Twilio media stream as a :class:`~gateway.transports.base.Transport` (see the module doc)."""

    def __init__(self, call_id: str, ws: web.WebSocketResponse, start: Start, config: GatewayConfig) -> None:
        self.call_id = call_id
        self.start = start
        self._ws = ws
        self._config = config
        self._writer = StreamWriter(self._write)
        self.audio = TwilioAudio(self._writer, start.stream_sid, max_pending_marks=config.telephony.max_pending_marks,
                                 options=SocketAudioOptions(max_buffered_seconds=60.0))
        self._decoder = G711Decoder("pcmu", rate=16_000)
        limits = config.limits
        self.gate = RealTimeGate(RealTimeBudget(lead_seconds=limits.max_audio_lead_seconds,
                                                max_dropped_seconds=limits.max_dropped_audio_seconds))
        self._listener: TransportListener | None = None
        self.events_open = False
        self.packets = 0
        self.events_dropped = 0  # Realtime server events: nobody on a Twilio stream reads them
        self.close_code, self.close_reason = NORMAL, "call_ended"
        self._closed = False

    # ------------------------------------------------------------------ Transport

    @property
    def audio_out(self) -> TwilioAudio:
        return self.audio

    @property
    def event_audio(self) -> None:
        return None  # the caller's audio is Twilio's media messages

    def attach(self, listener: TransportListener, tasks: TaskSet) -> None:
        self._listener = listener
        tasks.create_task(self._writer.run(), name=f"{self.call_id} twilio writer")
        tasks.create_task(self.audio.run(), name=f"{self.call_id} twilio audio")

    def send_event(self, event: Event) -> None:
        self.events_dropped += 1

    async def flush_events(self) -> None:
        return None  # no event is written to the stream

    async def packets_received(self) -> int:
        return self.packets

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.events_open = False
        self.audio.stop()
        if not self._ws.closed:
            await self._ws.close(code=self.close_code, message=self.close_reason.encode()[:123])

    # --------------------------------------------------------------- the stream

    async def serve(self) -> str:
        """Read the stream until it stops, closes or breaks; returns why it ended (the call's end reason)."""
        listener = self._listener
        if listener is None:
            raise RuntimeError("attach a session first")
        self.events_open = True
        listener.on_events_open()
        listener.on_connected()
        reason = "connection_closed"
        try:
            async for message in self._ws:
                self.packets += 1
                if message.type == WSMsgType.TEXT:
                    if await self._handle(listener, parse_message(message.data, max_payload_bytes=self._max_payload)):
                        reason = "hangup"
                        break
                elif message.type == WSMsgType.BINARY:
                    raise StreamError(UNSUPPORTED_DATA, "binary_message", "Twilio streams JSON text messages")
                elif message.type == WSMsgType.ERROR:
                    raise StreamError(TOO_BIG, "message_too_large", str(self._ws.exception()))
        except StreamError as exc:
            logger.info("call %s: ending the stream %s: %s (%s)", self.call_id, self.start.stream_sid, exc.reason, exc)
            self.close_code, self.close_reason, reason = exc.code, exc.reason, exc.reason
        except AudioTooFast as exc:
            logger.warning("call %s: ending the call: %s", self.call_id, exc)
            self.close_code, self.close_reason, reason = POLICY_VIOLATION, "audio_too_fast", "audio_too_fast"
        return reason

    @property
    def _max_payload(self) -> int:
        return self._config.telephony.max_message_bytes

    async def _handle(self, listener: TransportListener, message: Message) -> bool:
        """Act on one message; True when the stream stopped."""
        match message:
            case Media():
                self._check_sid(message.stream_sid)
                if message.track in ("inbound", "inbound_track") and message.payload:
                    await self._audio(listener, message.payload)
            case Mark():
                self._check_sid(message.stream_sid)
                self.audio.mark_played(message.name)
            case Dtmf():
                self._check_sid(message.stream_sid)
                listener.on_dtmf(message.digit)
            case Stop():
                self._check_sid(message.stream_sid)
                return True
            case Start():
                raise StreamError(POLICY_VIOLATION, "unexpected_start", "a stream starts once")
            case Connected() | Other():
                pass
        return False

    def _check_sid(self, stream_sid: str) -> None:
        if stream_sid != self.start.stream_sid:
            raise StreamError(POLICY_VIOLATION, "unknown_stream", f"streamSid {stream_sid[:64]!r} is not this stream's")

    async def _audio(self, listener: TransportListener, payload: bytes) -> None:
        if not self.gate.admit(len(payload) / WIRE_RATE):  # raises AudioTooFast once too much was dropped
            if self.gate.chunks_dropped == 1:
                logger.warning("call %s: media arrives faster than real time; dropping the excess", self.call_id)
            return
        pcm: FloatArray = self._decoder.decode(payload)
        if len(pcm):
            await listener.on_audio(pcm)

    async def _write(self, text: str) -> None:
        if self._ws.closed:
            return
        try:
            await self._ws.send_str(text)
        except ConnectionError:  # the caller hung up meanwhile: the read loop ends the call
            logger.debug("call %s: stream closing; a message was not sent", self.call_id)


async def read_start(ws: web.WebSocketResponse, *, within: float, max_payload_bytes: int) -> Start:
    """Twilio's ``connected`` and ``start``, within ``within`` seconds of the upgrade; raises StreamError."""
    try:
        async with asyncio.timeout(within):
            async for message in ws:
                if message.type == WSMsgType.ERROR:
                    raise StreamError(TOO_BIG, "message_too_large", str(ws.exception()))
                if message.type != WSMsgType.TEXT:
                    raise StreamError(UNSUPPORTED_DATA, "binary_message", "Twilio streams JSON text messages")
                parsed = parse_message(message.data, max_payload_bytes=max_payload_bytes)
                if isinstance(parsed, Start):
                    return parsed
                if not isinstance(parsed, Connected | Other):
                    raise StreamError(POLICY_VIOLATION, "missing_start", "media before the stream's start message")
    except TimeoutError:
        raise StreamError(POLICY_VIOLATION, "start_timeout", f"no start message within {within:g} s") from None
    raise StreamError(NORMAL, "closed_before_start")


async def serve_twilio_stream(request: web.Request, registry: SessionRegistry, config: GatewayConfig, *,
                              admitted: Callable[[str], None] | None = None) -> web.StreamResponse:
    """Serve one signed ``GET /twilio/media-stream`` until it ends (see the module doc).

    Raises :class:`~gateway.errors.GatewayError` before the upgrade when no call could be admitted
    (``capacity``, ``draining``): signaling answers JSON, and Twilio logs the refused handshake."""
    registry.check_admission()
    telephony = config.telephony
    # timeout: the wait for Twilio's answer to our close frame (aiohttp's default 10 s if Twilio never answers)
    ws = web.WebSocketResponse(max_msg_size=telephony.max_message_bytes, autoping=True, timeout=CLOSE_TIMEOUT_SECONDS)
    await ws.prepare(request)
    made: list[TwilioTransport] = []
    try:
        start = await read_start(ws, within=telephony.start_timeout_seconds,
                                 max_payload_bytes=telephony.max_message_bytes)
        try:
            session = telephony.session_for(start.custom_parameters)
        except ParameterNotAllowed as exc:
            raise StreamError(POLICY_VIOLATION, f"{exc.name}_not_allowed", str(exc)) from None

        def make(call_id: str) -> TwilioTransport:
            made.append(TwilioTransport(call_id, ws, start, config))
            return made[-1]

        try:
            call = await registry.open_call(make, session, call_id=twilio_call_id(start.call_sid))
        except GatewayError as exc:
            code = TRY_AGAIN_LATER if exc.status == 503 else POLICY_VIOLATION
            raise StreamError(code, exc.code, exc.message) from None
        logger.info("call %s: Twilio stream %s of call %s", call.id, start.stream_sid, start.call_sid)
        if admitted is not None:
            admitted(call.id)
        reason = "error"
        try:
            reason = await made[-1].serve()
        finally:
            await call.close(reason)  # a no-op when the session ended the call itself (its reason stands)
    except StreamError as exc:
        if not made:
            logger.info("Twilio stream refused: %s (%s)", exc.reason, exc)
        if not ws.closed:
            await ws.close(code=exc.code, message=exc.reason.encode()[:123])
    return ws


def twilio_call_id(call_sid: str) -> str | None:
    """The gateway's id of a Twilio call: ``rtc_`` and its CallSid in lower case (``rtc_ca…``), so the app that
    placed or answered the call can attach a sideband (``GET /v1/realtime?call_id=…``) knowing only the CallSid;
    None (a new id) for a CallSid that is not Twilio's ``CA`` and 32 hex digits."""
    return f"{CALL_ID_PREFIX}_{call_sid.lower()}" if _CALL_SID.fullmatch(call_sid) else None


__all__ = ["INVALID_PAYLOAD", "TwilioTransport", "read_start", "serve_twilio_stream", "twilio_call_id"]
