"""One realtime session: the OpenAI Realtime protocol between a caller and its conversation.

The session reads client events (parsed once, at the edge, by
:func:`~gateway.protocol.client_events.parse_client_event`) and turns them into
calls on the :class:`~gateway.voice.conversation.Conversation`; everything the
conversation says goes back as server events. It keeps what the protocol
needs around that — the session settings, the items ``conversation.item.retrieve``
returns, the per-caller event rate limit, the events waiting for the transport
to open — and decides when the call ends (its watchdog, the caller leaving).

It knows no transport: audio and events come and go through a
:class:`~gateway.session.transport.Transport`, WebRTC or any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, assert_never

from engines.base import FloatArray
from gateway.agents.client_text import ClientTextError, ClientTextStream
from gateway.aio import TaskSet
from gateway.config import GatewayConfig
from gateway.ops.observers import NULL_OBSERVER, CallObserver
from gateway.protocol import server_events as events
from gateway.protocol.client_events import (
    STREAM_NOT_FOUND,
    BadClientEvent,
    ClientEvent,
    ConversationItemCreate,
    ConversationItemDelete,
    ConversationItemRetrieve,
    ConversationItemTruncate,
    GatewayResponseTextDelta,
    GatewayResponseTextDone,
    InputAudioBufferAppend,
    InputAudioBufferClear,
    InputAudioBufferCommit,
    OutputAudioBufferClear,
    ResponseCancel,
    ResponseCreate,
    SessionUpdate,
    parse_client_event,
)
from gateway.protocol.server_events import Event
from gateway.protocol.session_settings import InvalidSession, PinnedField, SessionSettings
from gateway.session.audio_in import AppendedAudio
from gateway.session.items import ItemStore
from gateway.session.outbox import Outbox
from gateway.session.rate_limit import EventRateLimit
from gateway.session.sideband import Sidebands
from gateway.session.transport import Transport
from gateway.session.watchdog import CallWatchdog
from gateway.voice.conversation import Conversation
from gateway.voice.engines import Engines
from gateway.voice.options import VoiceOptions
from gateway.voice.tools import ToolError
from media.budget import AudioTooFast

logger = logging.getLogger(__name__)

#: Ends the gateway decides on while the events channel still works: the caller gets a
#: ``gateway.session.ended`` event before the hang-up. (After ``message_too_large`` the association is
#: aborted, so there is no channel left to tell it on.)
NOTICE_REASONS = frozenset({"shutdown", "drain_timeout", "error", "idle_timeout", "max_duration", "audio_too_fast",
                            "too_many_data_channels"})
NOTICE_FLUSH_SECONDS = 1.0
#: The largest ``input_audio_buffer.append`` message on a socket: 1 MiB of JSON holds about 16 s of 24 kHz
#: PCM16 in base64, more than the longest real-time lead (``limits.max_audio_lead_seconds`` ≤ 10 s) lets
#: through at once. (OpenAI accepts 15 MiB; audio that far ahead of real time is dropped here anyway.)
MAX_APPEND_BYTES = 1024 * 1024


class RealtimeSession:
    """One caller's session (see the module doc). Implements :class:`~gateway.session.transport.TransportListener`.

    Made with its transport, then :meth:`start` once the transport is set up; :meth:`close`
    ends it (safe twice) and always calls ``on_closed``.
    """

    def __init__(
        self,
        call_id: str,
        config: GatewayConfig,
        engines: Engines,
        settings: SessionSettings,
        transport: Transport,
        *,
        on_closed: Callable[[RealtimeSession], None],
        observer: CallObserver = NULL_OBSERVER,
    ) -> None:
        self.id = call_id
        self.transport = transport
        self._config = config
        self._engines = engines
        self._on_closed = on_closed
        self._observer = observer
        self.created_at = time.monotonic()
        self.end_reason: str | None = None
        self._tasks = TaskSet(f"call {call_id}")
        self._outbox = Outbox(transport, call_id=call_id, on_drop=lambda: observer.server_event_dropped(call_id))
        self._items = ItemStore()  # for conversation.item.retrieve
        self._rate = EventRateLimit(config.limits.max_events_per_second)
        self._closing: asyncio.Task[None] | None = None
        self._text_stream: ClientTextStream | None = None  # the latest client-streamed response
        self.conversation = Conversation(
            call_id=call_id,
            engines=engines,
            track=transport.audio_out,
            send=self.send,
            observer=observer,
            settings=settings,
            options=VoiceOptions.from_config(config),
            tasks=self._tasks,
        )
        self._activity_at = self.created_at
        self.watchdog = CallWatchdog(config.limits, call_id=call_id, packets_received=transport.packets_received,
                                     last_activity=self._last_activity, send=self.send, close=self.close_soon)
        self.sidebands = Sidebands(self._dispatch, max_event_bytes=config.limits.max_event_bytes,
                                   rate=config.limits.max_events_per_second, call_id=call_id)
        self._appended = AppendedAudio(config.limits, transport.event_audio, self.conversation.feed,
                                       settings.input_format)
        if transport.event_audio is not None:
            transport.event_audio.set_formats(settings.input_format, settings.output_format)
        transport.attach(self, self._tasks)

    @property
    def connected_at(self) -> float | None:
        """When the transport's media path came up (WebRTC: ICE + DTLS); None while the call is pending."""
        return self.watchdog.connected_at

    @property
    def tasks(self) -> TaskSet:
        """Every background task of this call (its transport's included); :meth:`close` ends them all."""
        return self._tasks

    def start(self) -> None:
        """The transport is set up: the watchdog starts watching."""
        self._tasks.create_task(self.watchdog.run(), name=f"{self.id} watchdog")

    def session_dict(self) -> dict[str, Any]:
        """The session as ``session.created``/``.updated`` report it; ``gateway.agent_can_call_tools`` says
        whether the session's agent can call its tools (the local LLM cannot: it is sent none)."""
        settings = self.conversation.settings
        session = settings.to_dict(self.id, self._engines.tts.voices,
                                   event_audio=self.transport.event_audio is not None)
        if settings.responds:
            try:
                can_call = self._engines.agents.create(settings.agent).can_call_tools
            except KeyError:
                can_call = False
            session.setdefault("gateway", {})["agent_can_call_tools"] = can_call
        return session

    def _last_activity(self) -> float:
        """When the caller last spoke or a reply last played (for the idle limit)."""
        if self.conversation.active_response_id is not None:
            self._activity_at = time.monotonic()
        return max(self._activity_at, self.conversation.speech_at)

    # ------------------------------------------------------ from the transport

    def on_events_open(self) -> None:
        self._outbox.open(events.session_created(self.session_dict()))

    async def on_audio(self, pcm: FloatArray) -> None:
        await self.conversation.feed(pcm)

    def on_connected(self) -> None:
        self.watchdog.connected()

    def on_lost(self, reason: str) -> None:
        self.close_soon(reason)

    def on_dtmf(self, digit: str) -> None:
        """A keypad press: ``input_audio_buffer.dtmf_event_received`` (GA), for the client and sideband; activity."""
        self._activity_at = time.monotonic()
        self.send(events.dtmf_event_received(digit, int(time.time())))

    def on_client_event(self, message: str | bytes) -> None:
        """One client message: parsed, dispatched; anything wrong with it comes back as an ``error`` event."""
        if not self._rate.allow():
            if self._rate.notice_due():
                self.send(events.error("rate_limited", "too many client events; events are being dropped"))
            return
        try:
            self._dispatch(parse_client_event(message, max_bytes=self._config.limits.max_event_bytes))
        except BadClientEvent as exc:
            self.send(events.error(exc.code, str(exc), event_id=exc.event_id, param=exc.param))

    async def on_client_message(self, message: str | bytes) -> None:
        """One socket message: appended audio is fed before this returns (see :mod:`gateway.session.audio_in`)."""
        limits = self._config.limits
        try:
            event = parse_client_event(message, max_bytes=limits.max_event_bytes, max_audio_bytes=MAX_APPEND_BYTES)
            if isinstance(event, InputAudioBufferAppend):
                await self._appended.append(event)
                return
        except BadClientEvent as exc:
            if self._rate.allow():
                self.send(events.error(exc.code, str(exc), event_id=exc.event_id, param=exc.param))
            return
        except AudioTooFast as exc:
            logger.warning("call %s: ending the call: %s", self.id, exc)
            self.close_soon("audio_too_fast")
            return
        if not self._rate.allow():
            if self._rate.notice_due():
                self.send(events.error("rate_limited", "too many client events; events are being dropped"))
            return
        try:
            self._dispatch(event)
        except BadClientEvent as exc:
            self.send(events.error(exc.code, str(exc), event_id=exc.event_id, param=exc.param))

    # ---------------------------------------------------------- server events

    def send(self, event: Event) -> None:
        """Send a server event to the caller (queued until the transport opens)."""
        if event["type"] == "error":
            self._observer.error(self.id, event["error"]["code"])
        elif event["type"] in ("conversation.item.added", "conversation.item.done"):
            self._items.remember(event["item"])
        elif event["type"] == "conversation.item.deleted":
            self._items.forget(event["item_id"])
        self._outbox.send(event)
        self.sidebands.send(event)

    # ---------------------------------------------------------- client events

    def _dispatch(self, event: ClientEvent) -> None:
        """One client event (from the transport or a sideband); raises :class:`BadClientEvent`."""
        try:
            self._handle(event)
        except ToolError as exc:  # a tool result, item or response input the conversation refused
            raise BadClientEvent(exc.code, str(exc), event.event_id, param=exc.param) from exc

    def _handle(self, event: ClientEvent) -> None:
        conversation = self.conversation
        match event:
            case SessionUpdate():
                self._update_session(event)
            case InputAudioBufferAppend():  # on a socket, on_client_message feeds it (awaited)
                raise BadClientEvent("unsupported_event", "the caller's audio is the WebRTC media track, not "
                                     "input_audio_buffer.append", event.event_id)
            case InputAudioBufferClear():
                conversation.clear_input()
                self.send(events.input_cleared())
            case InputAudioBufferCommit():
                if not conversation.commit_input():
                    raise BadClientEvent("input_audio_buffer_commit_empty", "there is no speech to commit",
                                         event.event_id)
            case ResponseCancel():
                if not conversation.cancel_response("client_cancelled"):
                    raise BadClientEvent("response_cancel_not_active", "there is no active response", event.event_id)
            case OutputAudioBufferClear():
                if not conversation.cancel_response("client_cleared"):
                    raise BadClientEvent("no_active_output", "no audio is playing", event.event_id)
            case ConversationItemCreate(item=item):
                conversation.add_item(item)
            case ConversationItemDelete():
                conversation.delete_item(event.item_id)
            case ConversationItemTruncate():
                heard = conversation.truncate_item(event.item_id, event.audio_end_ms)
                if heard is not None:  # a finished reply (the active one's item.done carries its text)
                    self._items.retext(event.item_id, heard)
            case ConversationItemRetrieve():
                found = self._items.get(event.item_id)
                if found is None:
                    raise BadClientEvent("item_not_found", f"no item with id {event.item_id!r}", event.event_id)
                self.send(events.item_retrieved(found))
            case ResponseCreate():
                self._create_response(event)
            case GatewayResponseTextDelta() | GatewayResponseTextDone():
                self._client_text(event)
            case _:
                assert_never(event)

    def _update_session(self, event: SessionUpdate) -> None:
        try:
            settings = self.conversation.settings.updated(
                event.session, voices=self._engines.tts.voices, agents=self._engines.agents.names
            )
        except PinnedField as exc:  # the call's client secret pinned it (signaling/bound_session.py)
            raise BadClientEvent("session_field_pinned", str(exc), event.event_id, param=exc.param) from exc
        except InvalidSession as exc:
            raise BadClientEvent("invalid_value", str(exc), event.event_id, param=exc.param) from exc
        self.conversation.update_settings(settings)
        self._appended.set_format(settings.input_format)
        if self.transport.event_audio is not None:
            self.transport.event_audio.set_formats(settings.input_format, settings.output_format)
        self.send(events.session_updated(self.session_dict()))

    def _create_response(self, event: ResponseCreate) -> None:
        """``response.create``; with ``"response": {"text_stream": true}`` the client streams the text."""
        if not self.conversation.settings.responds:
            raise BadClientEvent("transcription_session", "a transcription session never responds", event.event_id)
        stream = None
        if event.text_stream:
            stream = ClientTextStream(idle_timeout=self._config.agents.client_text_timeout_seconds)
        if not self.conversation.create_response(agent=stream, params=event.params):
            raise BadClientEvent("conversation_already_has_active_response",
                                 "a response is already in progress; cancel it first", event.event_id)
        if stream is not None:
            stream.response_id, self._text_stream = self.conversation.active_response_id, stream

    def _client_text(self, event: GatewayResponseTextDelta | GatewayResponseTextDone) -> None:
        """``gateway.response.text.delta`` / ``.done``: text for the client-streamed response."""
        stream = self._text_stream
        if stream is None or (event.response_id is not None and event.response_id != stream.response_id):
            raise BadClientEvent("response_not_found", STREAM_NOT_FOUND, event.event_id)
        if stream.closed or self.conversation.active_response_id != stream.response_id:
            logger.debug("call %s: text for ended response %s dropped", self.id, stream.response_id)
            return  # cancelled (barge-in) or ended: response.done told the client
        match event:
            case GatewayResponseTextDone():
                stream.finish()
            case GatewayResponseTextDelta(delta=None):
                raise BadClientEvent("invalid_value", "delta must be a string", event.event_id)
            case GatewayResponseTextDelta(delta=str(delta)):
                try:
                    stream.push(delta)
                except ClientTextError as exc:
                    raise BadClientEvent(exc.code, str(exc), event.event_id) from exc

    # ------------------------------------------------------------------ close

    def close_soon(self, reason: str) -> None:
        """Close in the background (from a callback that cannot await)."""
        if self._closing is None and self.end_reason is None:
            self._closing = asyncio.get_running_loop().create_task(self._close_logged(reason),
                                                                   name=f"{self.id} close")

    async def _close_logged(self, reason: str) -> None:
        try:
            await self.close(reason)
        except Exception:
            logger.exception("call %s: closing failed", self.id)

    async def close(self, reason: str = "hangup") -> None:
        """Hang up and free everything. Safe to call more than once; ``on_closed`` is always called."""
        if self.end_reason is not None:
            return
        self.end_reason = reason
        logger.info("call %s: closing (%s)", self.id, reason)
        try:
            try:
                await self._stop_work()
                if reason in NOTICE_REASONS:
                    await self._send_notice(reason)
            finally:
                self.sidebands.detach_all()
                await self.transport.close()
        finally:
            self._on_closed(self)

    async def _stop_work(self) -> None:
        """End the conversation (its reply is reported), then cancel and await every background task.

        Bounded by ``limits.call_close_timeout_seconds``: a stuck engine does not keep a call from ending.
        """
        limit = self._config.limits.call_close_timeout_seconds
        try:
            async with asyncio.timeout(limit):
                try:
                    await self.conversation.close()
                finally:
                    await self._tasks.close()
        except TimeoutError:
            logger.warning("call %s: %d background task(s) still running %.0f s after the hang-up", self.id,
                           len(self._tasks), limit)

    async def _send_notice(self, reason: str) -> None:
        """Tell the caller that the gateway ends the session, and let the message leave first."""
        if not self._outbox.is_open:
            return
        self.send(events.session_ended(reason))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(NOTICE_FLUSH_SECONDS):
                await self.transport.flush_events()
