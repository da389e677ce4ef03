"""WebRTC: one aiortc peer connection per call, events on the ``oai-events`` data channel.

The caller's offer is answered with one audio track (:class:`media.OutboundAudioTrack`,
Opus packets encoded by the track itself when Opus was negotiated and
``media.opus_packets`` is on) and its audio is read as 16 kHz PCM
(:class:`media.InboundAudioReader`), no faster than real time (``audio_too_fast``
ends a caller that keeps sending faster). The first data channel labelled
``oai-events`` carries the events; any other is closed at once, and the
``MAX_DATA_CHANNELS``-th ends the call (``too_many_data_channels``). ICE that does
not complete within ``limits.ice_timeout_seconds`` ends the call (``ice_timeout``),
as does a connection that fails or closes (``connection_failed`` / ``_closed``).

Before aiortc sees the offer, :mod:`gateway.transports.offer` makes every section
but the first audio and the data channel inactive and keeps only the caller's ICE
candidates :mod:`gateway.transports.ice` allows; the gateway's own candidates are
gathered on ``server.ice_addresses``, and the answer advertises the bounded
message size :mod:`gateway.transports.sctp` enforces (``message_too_large``,
``data_channel_error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field

from aiortc import RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from gateway.aio import TaskSet
from gateway.config import GatewayConfig
from gateway.errors import InvalidOffer
from gateway.protocol.server_events import Event
from gateway.transports import ice, sctp
from gateway.transports.base import OfferTransportFactory, TransportListener
from gateway.transports.ice import CandidatePolicy
from gateway.transports.offer import bound_answer, prepare_offer
from media import InboundAudioReader, OutboundAudioTrack
from media.inbound import AudioTooFast, RealTimeBudget
from media.opus import negotiated_audio_codec

logger = logging.getLogger(__name__)

EVENTS_CHANNEL = "oai-events"
MAX_DATA_CHANNELS = 8  # opened by one caller; the events channel is the one a client needs
MESSAGE_SIZE_MARGIN = 16 * 1024  # advertised beyond limits.max_event_bytes: a bit over gets event_too_large


@dataclass(frozen=True)
class WebRTCOptions:
    ice_servers: tuple[str, ...] = ()  # stun:/turn: URLs handed to the peer connection
    opus_packets: bool = True  # the track encodes Opus itself when Opus is negotiated
    ice_timeout_seconds: float = 10.0
    close_timeout_seconds: float = 5.0
    candidates: CandidatePolicy = field(default_factory=CandidatePolicy)
    max_message_bytes: int = 64 * 1024 + MESSAGE_SIZE_MARGIN  # data-channel messages, advertised and enforced
    audio_budget: RealTimeBudget = field(default_factory=RealTimeBudget)

    def __post_init__(self) -> None:
        if self.ice_timeout_seconds <= 0 or self.close_timeout_seconds <= 0:
            raise ValueError("the ICE and close timeouts must be positive")

    @classmethod
    def from_config(cls, config: GatewayConfig) -> WebRTCOptions:
        limits = config.limits
        return cls(ice_servers=config.server.ice_servers, opus_packets=config.media.opus_packets,
                   ice_timeout_seconds=limits.ice_timeout_seconds,
                   close_timeout_seconds=limits.call_close_timeout_seconds,
                   candidates=CandidatePolicy.from_config(config),
                   max_message_bytes=limits.max_event_bytes + MESSAGE_SIZE_MARGIN,
                   audio_budget=RealTimeBudget(lead_seconds=limits.max_audio_lead_seconds,
                                               max_dropped_seconds=limits.max_dropped_audio_seconds))


def webrtc_transports(config: GatewayConfig) -> OfferTransportFactory:
    """What the registry makes each call's transport with; installs the aiortc extensions (once, at start-up)."""
    options = WebRTCOptions.from_config(config)
    sctp.install()
    ice.install_local_filter()
    networks = options.candidates.local_networks
    if networks and not ice.local_addresses_available(networks):
        logger.warning("server.ice_addresses matches none of this machine's addresses: answers will offer no "
                       "host candidate, and only callers reaching a STUN/TURN-derived one will connect")
    return lambda call_id: WebRTCTransport(call_id, options)


class WebRTCTransport:
    """One call's peer connection (see the module doc); a :class:`~gateway.transports.base.OfferTransport`."""

    def __init__(self, call_id: str, options: WebRTCOptions) -> None:
        self.call_id = call_id
        self._options = options
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(urls=url)
                                                                 for url in options.ice_servers]))
        self.track = OutboundAudioTrack()
        self._channel: RTCDataChannel | None = None
        self._channels_opened = 0
        self.inbound_audio: InboundAudioReader | None = None  # the caller's audio, once its track arrived
        self._listener: TransportListener | None = None
        self._tasks: TaskSet | None = None
        self._closed = False
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    @property
    def audio_out(self) -> OutboundAudioTrack:
        return self.track

    @property
    def event_audio(self) -> None:
        """None: the caller's audio is the RTP track (``input_audio_buffer.append`` is refused)."""
        return None

    def attach(self, listener: TransportListener, tasks: TaskSet) -> None:
        self._listener, self._tasks = listener, tasks

    def _attached(self) -> tuple[TransportListener, TaskSet]:
        if self._listener is None or self._tasks is None:
            raise RuntimeError(f"call {self.call_id}: the transport has no session attached")
        return self._listener, self._tasks

    # ------------------------------------------------------------- signaling

    async def answer(self, offer_sdp: str) -> str:
        """Apply the caller's offer and return our answer SDP (with ICE candidates)."""
        _, tasks = self._attached()
        await self._apply_offer(offer_sdp)
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise InvalidOffer("no_audio", "the SDP offer has no audio media section")
        self.pc.addTrack(self.track)
        try:
            with ice.gathering_on(self._options.candidates.local_networks):
                await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:  # e.g. a BUNDLE offer whose m-sections lack a=mid breaks aiortc's answer
            logger.info("call %s: offer cannot be answered: %r", self.call_id, exc)
            raise InvalidOffer("invalid_sdp", f"the SDP offer could not be answered: {exc}") from exc
        answer = bound_answer(str(self.pc.localDescription.sdp), self._options.max_message_bytes)
        if not ice.local_filter_installed():
            answer = ice.filter_local_candidates(answer, self._options.candidates.local_networks)
        if self._options.opus_packets and negotiated_audio_codec(answer) == "opus":
            self.track.send_opus_packets()
        tasks.create_task(self._ice_watchdog(), name=f"{self.call_id} ice watchdog")
        return answer

    async def _apply_offer(self, offer_sdp: str) -> None:
        """The offer, less what the gateway does not use (:mod:`gateway.transports.offer`), as the remote side."""
        prepared = prepare_offer(offer_sdp, self._options.candidates)
        if prepared.inactive or prepared.candidates_dropped:
            logger.info("call %s: answering %s inactive; %d ICE candidate(s) used, dropped: %s", self.call_id,
                        ", ".join(prepared.inactive) or "no section", prepared.candidates_kept,
                        dict(prepared.candidates_dropped) or "none")
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=prepared.sdp, type="offer"))
        except Exception as exc:  # aiortc's SDP parsing raises many types on hostile input
            logger.info("call %s: offer rejected: %r", self.call_id, exc)
            raise InvalidOffer("invalid_sdp", f"the SDP offer could not be applied: {exc}") from exc
        channels = self.pc.sctp
        if isinstance(channels, sctp.BoundedSctpTransport):
            channels.limit_inbound(sctp.InboundLimit(self._options.max_message_bytes), self._on_sctp_violation)

    def _on_sctp_violation(self, reason: str, detail: str) -> None:
        logger.warning("call %s: data channel given up (%s): %s", self.call_id, reason, detail)
        self._attached()[0].on_lost(reason)

    async def _ice_watchdog(self) -> None:
        await asyncio.sleep(self._options.ice_timeout_seconds)
        if self.pc.connectionState not in ("connected", "closed"):
            logger.info("call %s: ICE did not complete within %.0f s", self.call_id,
                        self._options.ice_timeout_seconds)
            self._attached()[0].on_lost("ice_timeout")

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        logger.info("call %s: connection %s", self.call_id, state)
        listener, _ = self._attached()
        if state == "connected":
            listener.on_connected()
        if state in ("failed", "closed"):
            listener.on_lost("connection_" + state)

    async def packets_received(self) -> int:
        """Packets of any kind (RTP, RTCP, data channel) received from the caller so far."""
        report = await self.pc.getStats()
        return sum(int(getattr(stats, "packetsReceived", 0) or 0) for stats in report.values()
                   if stats.type == "transport")

    # ----------------------------------------------------------------- media

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self.inbound_audio is None:  # the offer was left one audio section
            self.inbound_audio = InboundAudioReader(track, budget=self._options.audio_budget,
                                                    label=f"call {self.call_id}")
            self._attached()[1].create_task(self._read_audio(self.inbound_audio),
                                            name=f"{self.call_id} inbound audio")

    async def _read_audio(self, reader: InboundAudioReader) -> None:
        listener, _ = self._attached()
        try:
            async for pcm in reader:
                await listener.on_audio(pcm)
        except asyncio.CancelledError:
            raise
        except AudioTooFast as exc:
            logger.warning("call %s: ending the call: %s", self.call_id, exc)
            listener.on_lost("audio_too_fast")
        except Exception:
            logger.exception("call %s: inbound audio failed", self.call_id)
            listener.on_lost("error")

    # ---------------------------------------------------------------- events

    @property
    def events_open(self) -> bool:
        return self._channel is not None and self._channel.readyState == "open"

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        listener, _ = self._attached()
        self._channels_opened += 1
        if channel.label != EVENTS_CHANNEL or self._channel is not None:
            # Left open, it would carry messages past the session's size and rate limits into aiortc's buffers.
            logger.info("call %s: closing data channel %r: only one %r channel is used", self.call_id,
                        channel.label[:64], EVENTS_CHANNEL)
            channel.close()
            if self._channels_opened >= MAX_DATA_CHANNELS:
                listener.on_lost("too_many_data_channels")
            return
        self._channel = channel
        channel.on("message", listener.on_client_event)
        if channel.readyState == "open":
            listener.on_events_open()
        else:
            channel.on("open", listener.on_events_open)

    def send_event(self, event: Event) -> None:
        channel = self._channel
        if channel is None or channel.readyState != "open":  # the session checks events_open first
            logger.debug("call %s: %s dropped: the events channel is not open", self.call_id, event["type"])
            return
        channel.send(json.dumps(event))

    async def flush_events(self) -> None:
        """Wait until everything buffered on the data channel went to the SCTP transport."""
        channel = self._channel
        if channel is None or channel.readyState != "open":
            return
        sent = asyncio.Event()
        channel.once("bufferedamountlow", sent.set)
        try:
            if channel.bufferedAmount > 0:
                await sent.wait()
        finally:
            with contextlib.suppress(KeyError):  # already removed if it fired
                channel.remove_listener("bufferedamountlow", sent.set)

    # ----------------------------------------------------------------- close

    async def close(self) -> None:
        """Stop the track and close the peer connection (bounded by ``close_timeout_seconds``)."""
        if self._closed:
            return
        self._closed = True
        self.track.stop()
        try:
            await asyncio.wait_for(self.pc.close(), self._options.close_timeout_seconds)
        except Exception:  # a timeout or an aiortc error: the call ends either way
            logger.warning("call %s: peer connection did not close cleanly", self.call_id)
