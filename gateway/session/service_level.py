"""The service level the admitted calls are getting, measured as they go (one :class:`ServiceLevel` per process).

Admission (:mod:`gateway.session.admission`) refuses a new call while the calls already admitted miss their
service level: turn overhead p95 over ``admission.max_overhead_ms`` (500), barge-in stop median over
``admission.max_barge_in_stop_ms`` (400), replies with underruns (a gap the caller heard), or speech synthesis
under current load slower than ``admission.max_tts_rtf`` of playback. These are the figures of the issue where
12 calls on a slower 2-core machine were all admitted: overhead p95 1634 ms, 38 replies with underruns,
barge-in stop p50 426 ms. It is fed as a :class:`~gateway.ops.observers.CallObserver` (the same events as
``/metrics``), over a sliding window (``admission.window_seconds``).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from gateway.config import AdmissionConfig
from gateway.ops.observers import CallObserver, TurnReport

#: Recent clause syntheses whose real-time factor counts (the last ones, at most this old).
TTS_SAMPLES = 12
TTS_MAX_AGE_SECONDS = 20.0
#: Until calls have ended here, the expected call duration (s) for ``Retry-After``.
PRIOR_CALL_SECONDS = 60.0
MAX_SAMPLES = 4096  # per window deque: bounded whatever the call rate


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class ServiceLevel(CallObserver):
    def __init__(self, config: AdmissionConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._clock = clock
        self._overheads: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)  # (at, ms)
        self._barge_ins: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)
        self._underruns: deque[float] = deque(maxlen=MAX_SAMPLES)
        self._tts: deque[tuple[float, float]] = deque(maxlen=TTS_SAMPLES)  # (at, wall / audio)
        self._call_seconds = PRIOR_CALL_SECONDS
        self.calls_ended = 0

    # ------------------------------------------------------------ observer

    def turn_completed(self, call_id: str, report: TurnReport) -> None:
        if report.overhead_ms is not None:
            self._overheads.append((self._clock(), max(0.0, report.overhead_ms)))

    def barge_in(self, call_id: str, stop_s: float | None) -> None:
        if stop_s is not None:
            self._barge_ins.append((self._clock(), stop_s * 1000))

    def reply_played(self, call_id: str, played_s: float, underrun_s: float) -> None:
        if underrun_s > 0:
            self._underruns.append(self._clock())

    def tts_finished(self, audio_s: float, compute_s: float) -> None:
        if audio_s > 0:
            self._tts.append((self._clock(), compute_s / audio_s))

    def call_ended(self, call_id: str, reason: str, duration_s: float, turns: int) -> None:
        """Calls' durations, smoothed (EWMA, 0.2), for ``Retry-After``."""
        self.calls_ended += 1
        self._call_seconds += 0.2 * (max(1.0, duration_s) - self._call_seconds)

    # ------------------------------------------------------------ figures

    def _recent(self, samples: deque[tuple[float, float]]) -> list[float]:
        cutoff = self._clock() - self._config.window_seconds
        return [value for at, value in samples if at >= cutoff]

    @property
    def overhead_p95_ms(self) -> float:
        return percentile(self._recent(self._overheads), 0.95)

    @property
    def barge_in_stop_p50_ms(self) -> float:
        return percentile(self._recent(self._barge_ins), 0.5)

    @property
    def underruns(self) -> int:
        cutoff = self._clock() - self._config.window_seconds
        return sum(1 for at in self._underruns if at >= cutoff)

    @property
    def tts_rtf(self) -> float:
        """Median wall-time real-time factor of the last clauses synthesised (0 when none lately)."""
        cutoff = self._clock() - TTS_MAX_AGE_SECONDS
        return percentile([rtf for at, rtf in self._tts if at >= cutoff], 0.5)

    @property
    def call_seconds(self) -> float:
        return self._call_seconds

    def violation(self) -> str | None:
        """Which service level the admitted calls are missing now, or None."""
        c = self._config
        if c.max_overhead_ms and (p95 := self.overhead_p95_ms) > c.max_overhead_ms:
            return f"turn overhead p95 {p95:.0f} ms over the last {c.window_seconds:.0f} s"
        if c.max_barge_in_stop_ms and (stop := self.barge_in_stop_p50_ms) > c.max_barge_in_stop_ms:
            return f"barge-in stop p50 {stop:.0f} ms over the last {c.window_seconds:.0f} s"
        if c.max_underruns >= 0 and (count := self.underruns) > c.max_underruns:
            return f"{count} replies with underruns in the last {c.window_seconds:.0f} s"
        if c.max_tts_rtf and (rtf := self.tts_rtf) > c.max_tts_rtf:
            return f"speech synthesis at {rtf:.2f} of real time"
        return None

    def seconds_until_clear(self) -> float:
        """How long until the oldest sample that breaks the service level leaves the window (0: none does)."""
        if self.violation() is None:
            return 0.0
        now, window = self._clock(), self._config.window_seconds
        oldest = [samples[0][0] for samples in (self._overheads, self._barge_ins) if samples]
        oldest += [self._underruns[0]] if self._underruns else []
        return max(0.0, min(oldest, default=now) + window - now)
