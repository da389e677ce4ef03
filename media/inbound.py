"""Reads a remote audio track as 16 kHz mono float32 PCM, no faster than real time."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.frame import AudioFrame

from media.pcm import FloatArray, PcmConverter

logger = logging.getLogger(__name__)


class AudioTooFast(Exception):
    """The caller kept sending audio faster than real time (see :class:`RealTimeBudget`)."""


@dataclass(frozen=True)
class RealTimeBudget:
    """How far a caller's audio may run ahead of the wall clock.

    A caller speaks in real time: 20 ms of audio every 20 ms, give or take network
    jitter and its sound card's clock. aiortc decodes whatever arrives into an
    unbounded queue, so a caller that sends faster (a flood of RTP, an unpaced track)
    grew that queue without limit and made the gateway run VAD and resampling on its
    backlog, on the event loop every call shares. The reader lets audio through at
    ``1 + drift`` times real time with a burst of ``lead_seconds`` (a token bucket);
    beyond it frames are dropped and counted, and once ``max_dropped_seconds`` of
    audio was dropped the reader raises :class:`AudioTooFast` (0: never). Dropping
    is cheap (no resampling, no VAD), so the reader keeps aiortc's queue empty
    however fast the caller sends. A real caller never loses a frame to it: a network
    stall delays audio, it does not bring it early, and sound card clocks drift by
    well under 0.1 %. (The gateway's own stall does: of a backlog longer than
    ``lead_seconds`` built up while the reader waited, the excess is dropped.)
    """

    lead_seconds: float = 1.0
    max_dropped_seconds: float = 5.0
    drift: float = 0.05

    def __post_init__(self) -> None:
        if not self.lead_seconds > 0 or self.max_dropped_seconds < 0 or not 0 <= self.drift <= 1:
            raise ValueError("lead_seconds must be > 0, max_dropped_seconds >= 0 and drift 0..1")


class InboundAudioReader:
    """``async for pcm in reader`` yields the caller's audio as it arrives.

    Iteration ends when the track ends. Each item is one decoded frame (20 ms
    for Opus) resampled to ``rate``; nothing is buffered here beyond that. Audio
    beyond ``budget`` is dropped (:attr:`frames_dropped`, :attr:`seconds_dropped`);
    ``label`` names the call in the log.
    """

    def __init__(self, track: MediaStreamTrack, *, rate: int = 16_000, budget: RealTimeBudget | None = None,
                 label: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        if track.kind != "audio":
            raise ValueError("InboundAudioReader needs an audio track")
        self._track = track
        self._converter = PcmConverter(rate)
        self._budget = budget or RealTimeBudget()
        self._label = label
        self._clock = clock
        self._tokens = self._budget.lead_seconds
        self._refilled_at: float | None = None
        self.frames_received = 0
        self.frames_dropped = 0
        self.seconds_dropped = 0.0

    async def __aiter__(self) -> AsyncIterator[FloatArray]:
        while True:
            try:
                frame = await self._track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, AudioFrame):
                continue
            self.frames_received += 1
            if not self._admit(frame.samples / frame.sample_rate if frame.sample_rate else 0.0):
                continue
            pcm = self._converter.convert(frame)
            if len(pcm):
                yield pcm  # type: ignore[misc]

    def _admit(self, seconds: float) -> bool:
        """Whether a frame of ``seconds`` is within the budget; counts it (and may raise) when it is not."""
        budget, now = self._budget, self._clock()
        if self._refilled_at is not None:
            elapsed = now - self._refilled_at
            self._tokens = min(budget.lead_seconds, self._tokens + elapsed * (1 + budget.drift))
        self._refilled_at = now
        if seconds <= self._tokens:
            self._tokens -= seconds
            return True
        if self.frames_dropped == 0:
            logger.warning("%s: audio arrives faster than real time (more than %.1f s ahead); dropping the excess",
                           self._label or "inbound audio", budget.lead_seconds)
        self.frames_dropped += 1
        self.seconds_dropped += seconds
        if budget.max_dropped_seconds and self.seconds_dropped > budget.max_dropped_seconds:
            raise AudioTooFast(f"{self.seconds_dropped:.1f} s of audio beyond real time")
        return False
