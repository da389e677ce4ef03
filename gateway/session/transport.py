"""The seam between a session and the transport that carries it to the caller.

A session speaks the OpenAI Realtime protocol; a transport only moves things:
server events out (:meth:`Transport.send_event`), raw client messages and the
caller's audio in (:class:`TransportListener`), the gateway's voice out
(:attr:`Transport.audio_out`, the paced output the voice layer pushes to). It
knows no event names. WebRTC (:mod:`gateway.transports.webrtc`) carries events
on the ``oai-events`` data channel and audio as RTP; a WebSocket or Twilio
transport carries both on one socket (audio as base64 PCM16 or μ-law).

These protocols live with the session because the session depends on them and
sits below the transports (``[tool.importlinter]`` in pyproject.toml);
:mod:`gateway.transports.base` is where transports import them from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from engines.base import FloatArray
from gateway.aio import TaskSet
from gateway.protocol.server_events import Event
from gateway.protocol.session_settings import AudioFormat
from gateway.voice.output import AudioOutput


class TransportListener(Protocol):
    """What a transport tells its session (:class:`~gateway.session.session.RealtimeSession` is one)."""

    def on_events_open(self) -> None:
        """Events can flow both ways now (a data channel opened, a socket was accepted). Called once."""

    def on_client_event(self, message: str | bytes) -> None:
        """One raw message from the client, unparsed: the session parses and limits it."""

    async def on_client_message(self, message: str | bytes) -> None:
        """One raw message from a socket that carries audio in events, awaited before the next is read.

        As :meth:`on_client_event`, except that ``input_audio_buffer.append`` is decoded (by
        :attr:`Transport.event_audio`) and fed to the conversation before this returns, bounded by real
        time rather than by the event rate limit."""

    async def on_audio(self, pcm: FloatArray) -> None:
        """The caller's next audio, 16 kHz mono float32, in order. Awaited: a slow session slows the reader."""

    def on_connected(self) -> None:
        """The media path is up: from now on a caller that sends nothing is gone (the session's watchdog)."""

    def on_lost(self, reason: str) -> None:
        """The transport failed or the caller left (``connection_closed``, ``ice_timeout``, ``error`` …)."""

    def on_dtmf(self, digit: str) -> None:
        """The caller pressed a key (``0``-``9``, ``*``, ``#``, ``A``-``D``): a phone transport's DTMF."""


class EventAudio(Protocol):
    """Audio the caller sends in events (``input_audio_buffer.append`` on a Realtime WebSocket).

    The session tells it the formats the caller chose (``audio.input.format`` / ``audio.output.format``)
    at the start and after each ``session.update``; the transport sends its replies' audio in the output
    format and decodes appended audio from the input format."""

    def set_formats(self, input_format: AudioFormat, output_format: AudioFormat) -> None:
        """The caller's formats from now on."""

    def decode(self, data: bytes) -> FloatArray:
        """Appended audio (already base64-decoded) as 16 kHz mono float32, in order (resampler state is kept).

        Raises ValueError when ``data`` cannot be audio of the input format (e.g. an odd byte count for PCM16)."""


class Transport(Protocol):
    """How audio and events reach one caller."""

    @property
    def event_audio(self) -> EventAudio | None:
        """How this transport carries audio in events; None when audio is media of its own (WebRTC's RTP,
        Twilio's ``media`` messages): ``input_audio_buffer.append`` is then refused."""

    @property
    def audio_out(self) -> AudioOutput:
        """The gateway's voice: replies pushed here are paced out (20 ms frames) and clearable.

        WebRTC's is a :class:`media.OutboundAudioTrack` aiortc pulls frames from; a socket
        transport can pull the same track's frames, or supply any other output."""

    @property
    def events_open(self) -> bool:
        """Whether :meth:`send_event` reaches the caller now."""

    def attach(self, listener: TransportListener, tasks: TaskSet) -> None:
        """Report to ``listener`` from now on; start background work only in ``tasks`` (the session's)."""

    def send_event(self, event: Event) -> None:
        """Send one server event (only while :attr:`events_open`; the session queues until then)."""

    async def flush_events(self) -> None:
        """Wait until the events sent so far have left (the caller bounds the wait)."""

    async def packets_received(self) -> int:
        """Packets of any kind received from the caller so far (a caller that vanished sends none)."""

    async def close(self) -> None:
        """Stop the audio and hang up. Safe to call twice; never raises for a transport that is already gone."""


class OfferTransport(Transport, Protocol):
    """A transport set up by an SDP offer and answer (WebRTC): how ``POST /v1/realtime/calls`` places a call."""

    async def answer(self, offer_sdp: str) -> str:
        """Apply the caller's offer, return the answer SDP. Raises :class:`~gateway.errors.InvalidOffer`."""


#: Makes the transport of a new call (given its id); the app passes the WebRTC one to the registry.
OfferTransportFactory = Callable[[str], OfferTransport]

T = TypeVar("T", bound=Transport)
#: Makes the transport of a new call placed some other way (a WebSocket accepted): see ``SessionRegistry.open_call``.
TransportFactory = Callable[[str], T]
