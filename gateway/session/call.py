"""One WebRTC call: its peer connection, data channel, media tasks and conversation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from gateway.protocol import server_events as events
from gateway.agents import ConversationItem
from gateway.agents.client_text import ClientTextError, ClientTextStream
from gateway.protocol.client_events import BadClientEvent, RateLimiter, parse_client_event
from gateway.config import GatewayConfig
from gateway.voice.conversation import Conversation
from gateway.voice.options import VoiceOptions
from gateway.voice.engines import Engines
from gateway.errors import InvalidOffer
from gateway.protocol.server_events import Event
from gateway.ops.observers import NULL_OBSERVER, CallObserver
from gateway.protocol.session_settings import InvalidSession, SessionSettings
from gateway.session.watchdog import CallWatchdog
from media import InboundAudioReader, OutboundAudioTrack
from media.opus import negotiated_audio_codec

logger = logging.getLogger(__name__)

EVENTS_CHANNEL = "oai-events"
MAX_EVENTS_BEFORE_OPEN = 256
MAX_RETRIEVABLE_ITEMS = 512
#: Ends the gateway decides on: the caller gets a ``gateway.session.ended`` event before the hang-up.
NOTICE_REASONS = frozenset({"shutdown", "drain_timeout", "error", "idle_timeout", "max_duration"})
NOTICE_FLUSH_SECONDS = 1.0


class Call:
    def __init__(
        self,
        call_id: str,
        config: GatewayConfig,
        engines: Engines,
        settings: SessionSettings,
        on_closed: Callable[[Call], None],
        observer: CallObserver = NULL_OBSERVER,
    ) -> None:
        self.id = call_id
        self._config = config
        self._engines = engines
        self._on_closed = on_closed
        self._observer = observer
        self.created_at = time.monotonic()
        self.end_reason: str | None = None
        ice = [RTCIceServer(urls=url) for url in config.server.ice_servers]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=ice))
        self.track = OutboundAudioTrack()
        self._channel: RTCDataChannel | None = None
        self._unsent: list[str] = []
        self._items: dict[str, dict[str, Any]] = {}  # item id -> its latest state, for conversation.item.retrieve
        self._limiter = RateLimiter(config.limits.max_events_per_second)
        self._rate_limited_notice_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing: asyncio.Task[None] | None = None
        self._text_stream: ClientTextStream | None = None  # the latest client-streamed response
        self.conversation = Conversation(
            call_id=call_id,
            engines=engines,
            track=self.track,
            send=self.send,
            observer=observer,
            settings=settings,
            options=VoiceOptions.from_config(config),
        )
        self._activity_at = self.created_at
        self.watchdog = CallWatchdog(config.limits, call_id=call_id, packets_received=self._packets_received,
                                     last_activity=self._last_activity, send=self.send, close=self.close_soon)
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    # ------------------------------------------------------------- signaling

    async def answer(self, offer_sdp: str) -> str:
        """Apply the caller's offer and return our answer SDP (with ICE candidates)."""
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # aiortc's SDP parsing raises many types on hostile input
            logger.info("call %s: offer rejected: %r", self.id, exc)
            raise InvalidOffer("invalid_sdp", f"the SDP offer could not be applied: {exc}") from exc
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise InvalidOffer("no_audio", "the SDP offer has no audio media section")
        self.pc.addTrack(self.track)
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:  # e.g. a BUNDLE offer whose m-sections lack a=mid breaks aiortc's answer
            logger.info("call %s: offer cannot be answered: %r", self.id, exc)
            raise InvalidOffer("invalid_sdp", f"the SDP offer could not be answered: {exc}") from exc
        if self._config.media.opus_packets and negotiated_audio_codec(self.pc.localDescription.sdp) == "opus":
            self.track.send_opus_packets()
        self._spawn(self._ice_watchdog())
        self._spawn(self.watchdog.run())
        return self.pc.localDescription.sdp

    async def _ice_watchdog(self) -> None:
        await asyncio.sleep(self._config.limits.ice_timeout_seconds)
        if self.pc.connectionState not in ("connected", "closed"):
            logger.info("call %s: ICE did not complete within %.0f s", self.id, self._config.limits.ice_timeout_seconds)
            self.close_soon("ice_timeout")

    # ----------------------------------------------------------------- media

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._spawn(self._read_audio(track))

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        reader = InboundAudioReader(track)
        try:
            async for pcm in reader:
                await self.conversation.feed(pcm)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("call %s: inbound audio failed", self.id)
            self.close_soon("error")

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        logger.info("call %s: connection %s", self.id, state)
        if state == "connected":
            self.watchdog.connected()
        if state in ("failed", "closed"):
            self.close_soon("connection_" + state)

    async def _packets_received(self) -> int:
        """Packets of any kind (RTP, RTCP, data channel) received from the caller so far."""
        report = await self.pc.getStats()
        return sum(int(getattr(stats, "packetsReceived", 0) or 0) for stats in report.values()
                   if stats.type == "transport")

    def _last_activity(self) -> float:
        """When the caller last spoke or a reply last played (for the idle limit)."""
        if self.conversation.active_response_id is not None:
            self._activity_at = time.monotonic()
        return max(self._activity_at, self.conversation.speech_at)

    # ---------------------------------------------------------------- events

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != EVENTS_CHANNEL or self._channel is not None:
            logger.info("call %s: ignoring data channel %r", self.id, channel.label)
            return
        self._channel = channel
        channel.on("message", self._on_message)
        if channel.readyState == "open":
            self._on_channel_open()
        else:
            channel.on("open", self._on_channel_open)

    def _on_channel_open(self) -> None:
        channel = self._channel
        assert channel is not None
        channel.send(json.dumps(events.session_created(self.session_dict())))
        unsent, self._unsent = self._unsent, []
        for message in unsent:
            channel.send(message)

    def session_dict(self) -> dict[str, Any]:
        return self.conversation.settings.to_dict(self.id, self._engines.tts.voices)

    def send(self, event: Event) -> None:
        if event["type"] == "error":
            self._observer.error(self.id, event["error"]["code"])
        elif event["type"] in ("conversation.item.added", "conversation.item.done"):
            self._items.pop(event["item"]["id"], None)
            self._items[event["item"]["id"]] = event["item"]
            if len(self._items) > MAX_RETRIEVABLE_ITEMS:
                del self._items[next(iter(self._items))]
        message = json.dumps(event)
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            channel.send(message)
        elif len(self._unsent) < MAX_EVENTS_BEFORE_OPEN:
            self._unsent.append(message)

    def _on_message(self, message: object) -> None:
        if not self._limiter.allow():
            now = time.monotonic()
            if now - self._rate_limited_notice_at >= 1.0:
                self._rate_limited_notice_at = now
                self.send(events.error("rate_limited", "too many client events; events are being dropped"))
            return
        try:
            event = parse_client_event(message, max_bytes=self._config.limits.max_event_bytes)
            self._dispatch(event)
        except BadClientEvent as exc:
            self.send(events.error(exc.code, str(exc), event_id=exc.event_id))
        except InvalidSession as exc:
            self.send(events.error("invalid_value", str(exc), param=exc.param,
                                   event_id=_event_id(message)))

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind, event_id = event["type"], event.get("event_id")
        conversation = self.conversation
        if kind == "session.update":
            settings = conversation.settings.updated(
                event.get("session"), voices=self._engines.tts.voices, agents=self._engines.agents.names
            )
            conversation.update_settings(settings)
            self.send(events.session_updated(self.session_dict()))
        elif kind == "input_audio_buffer.clear":
            conversation.clear_input()
            self.send(events.input_cleared())
        elif kind == "input_audio_buffer.commit":
            if not conversation.commit_input():
                raise BadClientEvent("input_audio_buffer_commit_empty", "there is no speech to commit", event_id)
        elif kind == "response.cancel":
            if not conversation.cancel_response("client_cancelled"):
                raise BadClientEvent("response_cancel_not_active", "there is no active response", event_id)
        elif kind == "output_audio_buffer.clear":
            if not conversation.cancel_response("client_cleared"):
                raise BadClientEvent("no_active_output", "no audio is playing", event_id)
        elif kind == "conversation.item.create":
            conversation.add_item(_parse_item(event.get("item"), event_id))
        elif kind == "conversation.item.retrieve":
            item_id = event.get("item_id")
            item = self._items.get(item_id) if isinstance(item_id, str) else None
            if item is None:
                raise BadClientEvent("item_not_found", f"no item with id {item_id!r}", event_id)
            self.send(events.item_retrieved(item))
        elif kind == "response.create":
            stream = self._requested_text_stream(event)
            if not conversation.create_response(agent=stream):
                raise BadClientEvent("conversation_already_has_active_response",
                                     "a response is already in progress; cancel it first", event_id)
            if stream is not None:
                stream.response_id, self._text_stream = conversation.active_response_id, stream
        elif kind in ("gateway.response.text.delta", "gateway.response.text.done"):
            self._client_text(event, done=kind == "gateway.response.text.done")
        else:
            raise BadClientEvent("unknown_event", f"unknown event type {kind!r}", event_id)

    def _requested_text_stream(self, event: dict[str, Any]) -> ClientTextStream | None:
        """A stream for ``response.create`` with ``"response": {"text_stream": true}`` (extension)."""
        response = event.get("response", {})
        flag = response.get("text_stream", False) if isinstance(response, dict) else None
        if not isinstance(flag, bool):
            raise BadClientEvent("invalid_value", "response must be an object and response.text_stream a boolean",
                                 event.get("event_id"))
        return ClientTextStream(idle_timeout=self._config.agents.client_text_timeout_seconds) if flag else None

    def _client_text(self, event: dict[str, Any], *, done: bool) -> None:
        """``gateway.response.text.delta`` / ``.done``: text for the client-streamed response."""
        event_id, stream = event.get("event_id"), self._text_stream
        if stream is None or event.get("response_id", stream.response_id) != stream.response_id:
            raise BadClientEvent("response_not_found", "no such streamed response; open one with response.create "
                                 "and \"response\": {\"text_stream\": true}", event_id)
        if stream.closed or self.conversation.active_response_id != stream.response_id:
            logger.debug("call %s: text for ended response %s dropped", self.id, stream.response_id)
            return  # cancelled (barge-in) or ended: response.done told the client
        if done:
            stream.finish()
            return
        delta = event.get("delta")
        if not isinstance(delta, str):
            raise BadClientEvent("invalid_value", "delta must be a string", event_id)
        try:
            stream.push(delta)
        except ClientTextError as exc:
            raise BadClientEvent(exc.code, str(exc), event_id) from exc

    # ----------------------------------------------------------------- close

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close_soon(self, reason: str) -> None:
        if self._closing is None:
            self._closing = asyncio.ensure_future(self.close(reason))

    async def close(self, reason: str = "hangup") -> None:
        """Hang up and free everything. Safe to call more than once."""
        if self.end_reason is not None:
            return
        self.end_reason = reason
        logger.info("call %s: closing (%s)", self.id, reason)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        await self.conversation.close()
        self.track.stop()
        if reason in NOTICE_REASONS:
            await self._send_notice(reason)
        try:
            await asyncio.wait_for(self.pc.close(), self._config.limits.call_close_timeout_seconds)
        except Exception:  # a timeout or an aiortc error: the call ends either way
            logger.warning("call %s: peer connection did not close cleanly", self.id)
        pending = [t for t in self._tasks if t is not current]
        if pending:
            await asyncio.wait(pending, timeout=self._config.limits.call_close_timeout_seconds)
        self._on_closed(self)

    async def _send_notice(self, reason: str) -> None:
        """Tell the caller that the gateway ends the session, and let the message leave first."""
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return
        sent = asyncio.Event()
        channel.once("bufferedamountlow", sent.set)  # all buffered data went to the transport
        self.send(events.session_ended(reason))
        if channel.bufferedAmount > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sent.wait(), NOTICE_FLUSH_SECONDS)
        with contextlib.suppress(KeyError):  # already removed if it fired
            channel.remove_listener("bufferedamountlow", sent.set)


def _event_id(message: object) -> str | None:
    with contextlib.suppress(Exception):
        value = json.loads(message)  # type: ignore[arg-type]
        if isinstance(value, dict) and isinstance(value.get("event_id"), str):
            return str(value["event_id"])
    return None


def _parse_item(item: Any, event_id: str | None) -> ConversationItem:
    if not isinstance(item, dict) or item.get("type", "message") != "message":
        raise BadClientEvent("invalid_item", "item must be an object of type 'message'", event_id)
    role = item.get("role")
    if role not in ("user", "assistant", "system"):
        raise BadClientEvent("invalid_item", "item.role must be 'user', 'assistant' or 'system'", event_id)
    content = item.get("content")
    if not isinstance(content, list) or not content:
        raise BadClientEvent("invalid_item", "item.content must be a non-empty list", event_id)
    texts = []
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in ("input_text", "output_text", "text"):
            raise BadClientEvent("invalid_item", "content parts must be text ('input_text', 'output_text', 'text')",
                                 event_id)
        if not isinstance(part.get("text"), str):
            raise BadClientEvent("invalid_item", "content part text must be a string", event_id)
        texts.append(part["text"])
    item_id = str(item["id"]) if isinstance(item.get("id"), str) and item["id"] else events.new_id("item")
    return ConversationItem(item_id, role, " ".join(texts))
