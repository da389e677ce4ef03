"""Audio the caller sends in events (``input_audio_buffer.append``): decoded, bounded by real time, fed.

On a socket that carries audio in events, each append is awaited before the socket reads
the next message, so a slow conversation slows the client (TCP backpressure), and what an
append holds is never queued here. Appends do not count against the per-event rate limit
(a client streams 50 a second of 20 ms chunks); instead they are bounded by real time, as
WebRTC's RTP is: a :class:`~media.budget.RealTimeGate` lets audio ahead of the wall clock by
``limits.max_audio_lead_seconds`` through, each append costing at least
:data:`MIN_APPEND_SECONDS` (so a flood of tiny appends is bounded too: about 100 a second).
Beyond the lead an append is dropped before it is decoded (cheap) and the client is told
(``input_audio_too_fast``, at most once a second); once ``limits.max_dropped_audio_seconds``
were dropped the call ends (``audio_too_fast``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from engines.base import FloatArray
from gateway.config import LimitsConfig
from gateway.protocol.client_events import BadClientEvent, InputAudioBufferAppend
from gateway.protocol.session_settings import AudioFormat
from gateway.session.rate_limit import EventRateLimit
from gateway.session.transport import EventAudio
from media.budget import RealTimeBudget, RealTimeGate

#: What one append costs at least, in seconds of the real-time budget.
MIN_APPEND_SECONDS = 0.01


class AppendedAudio:
    """One call's ``input_audio_buffer.append`` path (see the module doc)."""

    def __init__(self, limits: LimitsConfig, audio: EventAudio | None, feed: Callable[[FloatArray], Awaitable[None]],
                 input_format: AudioFormat) -> None:
        self._audio = audio
        self._feed = feed
        self._format = input_format
        self.gate = RealTimeGate(RealTimeBudget(lead_seconds=limits.max_audio_lead_seconds,
                                                max_dropped_seconds=limits.max_dropped_audio_seconds,
                                                min_cost_seconds=MIN_APPEND_SECONDS))
        self._notices = EventRateLimit(1)

    def set_format(self, input_format: AudioFormat) -> None:
        self._format = input_format

    async def append(self, event: InputAudioBufferAppend) -> None:
        """Decode and feed one append. Raises BadClientEvent (told to the client) and AudioTooFast (ends the call)."""
        if self._audio is None:
            raise BadClientEvent("unsupported_event", "this transport carries the caller's audio as media, "
                                 "not in input_audio_buffer.append", event.event_id)
        fmt = self._format
        if len(event.audio) % fmt.sample_bytes:
            raise BadClientEvent("invalid_audio", f"{fmt.type} audio must be whole {fmt.sample_bytes}-byte samples",
                                 event.event_id, param="audio")
        if not event.audio:
            return
        if not self.gate.admit(len(event.audio) / fmt.sample_bytes / fmt.rate):
            if self._notices.allow():
                raise BadClientEvent("input_audio_too_fast", "audio is arriving faster than real time; "
                                     "the excess is dropped", event.event_id)
            return
        try:
            pcm = self._audio.decode(event.audio)
        except ValueError as exc:
            raise BadClientEvent("invalid_audio", str(exc), event.event_id, param="audio") from exc
        if len(pcm):
            await self._feed(pcm)
