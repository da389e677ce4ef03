"""``[admission]``: which calls a process takes, from measured cost and service level (gateway/session/admission.py).

``limits.max_calls`` stays the upper bound; below it a call is admitted only while the calls already admitted
keep their service level and the projected CPU use with one more call at its peak cost stays under a target.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.errors import require as _require


@dataclass(frozen=True)
class AdmissionConfig:
    """Self-calibrated admission and graceful degradation (docs/benchmarks.md "Admission control")."""

    # Off: only limits.max_calls, limits.max_loop_lag_ms, limits.max_asr_wait_ms, limits.max_cpu_percent decide.
    enabled: bool = True
    # Projected CPU use (the machine's busy cores now + the admitted calls' growth + one more call at its peak
    # cost) over the CPUs this process may use must stay at or under this.
    target_utilization: float = 0.75  # 0.8 let in an 8th call whose level missed p95 500 ms (capacity.py)
    cpus: float = 0.0  # CPUs this process may use; 0 = measured (sched_getaffinity, cgroup cpu.max quota)
    # The service level of the admitted calls, over the last window_seconds; past any of these, no new call.
    window_seconds: float = 30.0
    max_overhead_ms: float = 500.0  # p95 of turn overhead (turn confirmed -> first reply packet)
    max_barge_in_stop_ms: float = 400.0  # median caller onset -> reply audio cleared
    max_underruns: int = 0  # replies whose audio ran out (a gap the caller heard) in the window
    max_tts_rtf: float = 0.5  # recent synthesis wall time / audio time: synthesis >= 2x faster than playback
    # Share of the idle admitted calls assumed to start talking or replying at once (their growth).
    growth_share: float = 0.5
    # Degradation for the admitted calls: level 1 (partials shed) from degrade_utilization, level 2 (cheaper
    # decoding) from degrade_strong_utilization or a missed real-time margin; one level down per
    # degrade_hold_seconds below the thresholds.
    degrade_utilization: float = 0.85
    degrade_strong_utilization: float = 0.95
    degrade_hold_seconds: float = 5.0
    retry_after_max_seconds: int = 30  # Retry-After of a capacity refusal: 1..this, from the expected call ends

    def __post_init__(self) -> None:
        _require(0.1 <= self.target_utilization <= 1.0, "admission.target_utilization", "must be 0.1..1")
        _require(self.cpus == 0 or 0.1 <= self.cpus <= 4096, "admission.cpus", "must be 0 (measured) or 0.1..4096")
        _require(1.0 <= self.window_seconds <= 600, "admission.window_seconds", "must be 1..600")
        for key in ("max_overhead_ms", "max_barge_in_stop_ms"):
            _require(getattr(self, key) >= 0, f"admission.{key}", "must be >= 0 (0: off)")
        _require(self.max_underruns >= -1, "admission.max_underruns", "must be >= 0 (-1: off)")
        _require(self.max_tts_rtf >= 0, "admission.max_tts_rtf", "must be >= 0 (0: off)")
        _require(0.0 <= self.growth_share <= 1.0, "admission.growth_share", "must be 0..1")
        _require(0.1 <= self.degrade_utilization <= self.degrade_strong_utilization <= 2.0,
                 "admission.degrade_utilization", "must be 0.1..degrade_strong_utilization (<= 2)")
        _require(0.5 <= self.degrade_hold_seconds <= 600, "admission.degrade_hold_seconds", "must be 0.5..600")
        _require(1 <= self.retry_after_max_seconds <= 3600, "admission.retry_after_max_seconds", "must be 1..3600")
