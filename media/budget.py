"""How far a caller's audio may run ahead of the wall clock: a budget and the gate that applies it.

Shared by every way audio arrives: WebRTC's RTP (:class:`media.inbound.InboundAudioReader`), audio in
events on a WebSocket (``input_audio_buffer.append``) and Twilio's ``media`` messages. A flood faster
than real time is dropped cheaply (before any decoding or VAD), counted, and ends the call once too much
was dropped (:class:`AudioTooFast`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


class AudioTooFast(Exception):
    """The caller kept sending audio faster than real time (see :class:`RealTimeBudget`)."""


@dataclass(frozen=True)
class RealTimeBudget:
    """How far a caller's audio may run ahead of the wall clock.

    A caller speaks in real time: 20 ms of audio every 20 ms, give or take network
    jitter and its sound card's clock. aiortc decodes whatever arrives into an
    unbounded queue, so a caller that sends faster (a flood of RTP, an unpaced track)
    grew that queue without limit and made the gateway run VAD and resampling on its
    backlog, on the event loop every call shares. The gate lets audio through at
    ``1 + drift`` times real time with a burst of ``lead_seconds`` (a token bucket);
    beyond it frames are dropped and counted, and once ``max_dropped_seconds`` of
    audio was dropped the gate raises :class:`AudioTooFast` (0: never). Dropping
    is cheap (no resampling, no VAD), so a reader keeps its queue empty
    however fast the caller sends. A real caller never loses a frame to it: a network
    stall delays audio, it does not bring it early, and sound card clocks drift by
    well under 0.1 %. (The gateway's own stall does: of a backlog longer than
    ``lead_seconds`` built up while the reader waited, the excess is dropped.)

    ``min_cost_seconds``: what one chunk costs at least. Audio in events can come in
    chunks of any size; without it a flood of one-sample appends would cost nothing.
    """

    lead_seconds: float = 1.0
    max_dropped_seconds: float = 5.0
    drift: float = 0.05
    min_cost_seconds: float = 0.0

    def __post_init__(self) -> None:
        if not self.lead_seconds > 0 or self.max_dropped_seconds < 0 or not 0 <= self.drift <= 1:
            raise ValueError("lead_seconds must be > 0, max_dropped_seconds >= 0 and drift 0..1")
        if not 0 <= self.min_cost_seconds <= self.lead_seconds:
            raise ValueError("min_cost_seconds must be 0..lead_seconds")


class RealTimeGate:
    """Applies a :class:`RealTimeBudget` to one caller's audio, chunk by chunk (see there)."""

    def __init__(self, budget: RealTimeBudget | None = None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget or RealTimeBudget()
        self._clock = clock
        self._tokens = self.budget.lead_seconds
        self._refilled_at: float | None = None
        self.chunks_dropped = 0
        self.seconds_dropped = 0.0

    def admit(self, seconds: float) -> bool:
        """Whether a chunk of ``seconds`` is within the budget; counts it when it is not.

        Raises :class:`AudioTooFast` once more than ``max_dropped_seconds`` were dropped."""
        budget, now = self.budget, self._clock()
        cost = max(seconds, budget.min_cost_seconds)
        if self._refilled_at is not None:
            elapsed = now - self._refilled_at
            self._tokens = min(budget.lead_seconds, self._tokens + elapsed * (1 + budget.drift))
        self._refilled_at = now
        if cost <= self._tokens:
            self._tokens -= cost
            return True
        self.chunks_dropped += 1
        self.seconds_dropped += cost
        if budget.max_dropped_seconds and self.seconds_dropped > budget.max_dropped_seconds:
            raise AudioTooFast(f"{self.seconds_dropped:.1f} s of audio beyond real time")
        return False
