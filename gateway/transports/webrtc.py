"""WebRTC: one aiortc peer connection per call, events on the ``oai-events`` data channel.

The caller's offer is answered with one audio track (:class:`media.OutboundAudioTrack`,
Opus packets encoded by the track itself when Opus was negotiated and
``media.opus_packets`` is on) and its audio is read as 16 kHz PCM
(:class:`media.InboundAudioReader`). The first data channel labelled
``oai-events`` carries the events; others are ignored. ICE that does not
complete within ``limits.ice_timeout_seconds`` ends the call (``ice_timeout``),
as does a connection that fails or closes (``connection_failed`` / ``_closed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass

from aiortc import RTCConfiguration, RTCDataChannel, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from gateway.aio import TaskSet
from gateway.config import GatewayConfig
from gateway.errors import InvalidOffer
from gateway.protocol.server_events import Event
from gateway.transports.base import OfferTransportFactory, TransportListener
from media import InboundAudioReader, OutboundAudioTrack
from media.opus import negotiated_audio_codec

logger = logging.getLogger(__name__)

EVENTS_CHANNEL = "oai-events"


@dataclass(frozen=True)
class WebRTCOptions:
    ice_servers: tuple[str, ...] = ()  # stun:/turn: URLs handed to the peer connection
    opus_packets: bool = True  # the track encodes Opus itself when Opus is negotiated
    ice_timeout_seconds: float = 30.0
    close_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.ice_timeout_seconds <= 0 or self.close_timeout_seconds <= 0:
            raise ValueError("the ICE and close timeouts must be positive")

    @classmethod
    def from_config(cls, config: GatewayConfig) -> WebRTCOptions:
        return cls(ice_servers=config.server.ice_servers, opus_packets=config.media.opus_packets,
                   ice_timeout_seconds=config.limits.ice_timeout_seconds,
                   close_timeout_seconds=config.limits.call_close_timeout_seconds)


def webrtc_transports(config: GatewayConfig) -> OfferTransportFactory:
    """What the registry makes each call's transport with."""
    options = WebRTCOptions.from_config(config)
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
        self._listener: TransportListener | None = None
        self._tasks: TaskSet | None = None
        self._closed = False
        self.pc.on("track", self._on_track)
        self.pc.on("datachannel", self._on_datachannel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    @property
    def audio_out(self) -> OutboundAudioTrack:
        return self.track

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
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:  # aiortc's SDP parsing raises many types on hostile input
            logger.info("call %s: offer rejected: %r", self.call_id, exc)
            raise InvalidOffer("invalid_sdp", f"the SDP offer could not be applied: {exc}") from exc
        audio = [t for t in self.pc.getTransceivers() if t.kind == "audio"]
        if not audio:
            raise InvalidOffer("no_audio", "the SDP offer has no audio media section")
        self.pc.addTrack(self.track)
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:  # e.g. a BUNDLE offer whose m-sections lack a=mid breaks aiortc's answer
            logger.info("call %s: offer cannot be answered: %r", self.call_id, exc)
            raise InvalidOffer("invalid_sdp", f"the SDP offer could not be answered: {exc}") from exc
        if self._options.opus_packets and negotiated_audio_codec(self.pc.localDescription.sdp) == "opus":
            self.track.send_opus_packets()
        tasks.create_task(self._ice_watchdog(), name=f"{self.call_id} ice watchdog")
        return str(self.pc.localDescription.sdp)

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
        if track.kind == "audio":
            self._attached()[1].create_task(self._read_audio(track), name=f"{self.call_id} inbound audio")

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        listener, _ = self._attached()
        reader = InboundAudioReader(track)
        try:
            async for pcm in reader:
                await listener.on_audio(pcm)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("call %s: inbound audio failed", self.call_id)
            listener.on_lost("error")

    # ---------------------------------------------------------------- events

    @property
    def events_open(self) -> bool:
        return self._channel is not None and self._channel.readyState == "open"

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != EVENTS_CHANNEL or self._channel is not None:
            logger.info("call %s: ignoring data channel %r", self.call_id, channel.label)
            return
        listener, _ = self._attached()
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
