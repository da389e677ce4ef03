"""What a call costs in CPU, learned online, and how many CPUs this process may use.

The cost is measured, not set by hand: every 0.5 s the process's CPU time (every thread: the engines' workers,
BLAS and onnxruntime threads, the event loop) is read, and the rate in cores is split over the admitted calls
by state, as exponentially weighted moving averages:

* ``base``: the process with no call;
* ``idle``: per call that is connected but neither talking nor being answered (VAD, Opus decode, RTP);
* ``active``: per call whose caller is talking or whose reply is playing (partial and final decodes,
  synthesis, Opus encode) — the call's *peak* cost, the one a new call is admitted at.

Two estimates: sequential (``idle`` from samples with no active call, then ``active`` from the rest given
``idle``) and an exponentially weighted least-squares fit of both at once (memory ~25 s), used when the samples
mix idle and active calls in varied proportions (under continuous load some call is always active, so the
sequential ``idle`` would never be learned). Until there are :data:`MIN_SAMPLES` samples of a state, its cost is
the *prior*: from a calibration at engine
load (:func:`gateway.session.admission.calibrate`: one timed Whisper decode and one timed Piper synthesis,
wall time, so a busy machine gives a higher, more careful prior), else :data:`DEFAULT_PRIOR`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Smoothing per 0.5 s sample: ~5 s time constant, quick enough to follow a load change, slow enough to
#: average a reply's bursts of synthesis.
ALPHA = 0.1
MIN_SAMPLES = 10
#: Samples with an active call after which the learned peak cost alone counts; before, it is blended with the
#: prior. Measured: 5 s into a load test the learned active cost was 0.06 cores (callers talking, partials
#: shed, no reply yet), 0.11 once replies played; trusted at once, it let 8 more calls in.
TRUST_SAMPLES = 60
#: A call's media path without speech: silero VAD per 32 ms window, Opus decode, aiortc RTP/SRTP in Python.
MEDIA_CORES = 0.03
#: Weight of each sample in the least-squares fit (memory ~1 / 0.02 samples = 25 s).
LS_ALPHA = 0.02
#: The fit is used only when idle and active call counts vary independently enough (1 - uncentred corr²).
LS_MIN_SPREAD = 0.05


@dataclass(frozen=True)
class CostPrior:
    """Cores per call before anything was measured: ``idle`` (connected, silent), ``active`` (talking/replying)."""

    idle: float
    active: float
    source: str = "default"

    @classmethod
    def from_calibration(cls, *, asr_decode_seconds: float, partial_interval_seconds: float,
                         tts_rtf: float) -> CostPrior:
        """A talking caller costs a decode per partial interval (without partials: one per ~3 s turn); a reply
        costs its synthesis' real-time factor in cores."""
        asr = asr_decode_seconds / (max(0.2, partial_interval_seconds) if partial_interval_seconds > 0 else 3.0)
        return cls(idle=MEDIA_CORES, active=MEDIA_CORES + max(asr, tts_rtf), source="calibration")


#: The 2-core reference machine measured slow (docs/benchmarks.md): decode 127 ms / 0.8 s, RTF 0.105.
DEFAULT_PRIOR = CostPrior(idle=MEDIA_CORES, active=MEDIA_CORES + 0.16)


def cgroup_cpu_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """The CPU quota of this process's cgroup in cores (v2 ``cpu.max``, v1 ``cfs_quota_us``); None when unlimited."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else float(quota) / float(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = float((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = float((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def cpu_capacity(configured: float = 0.0, *, cgroup_root: Path = Path("/sys/fs/cgroup")) -> float:
    """The CPUs this process may use: ``configured``, else its affinity mask capped by its cgroup quota."""
    if configured > 0:
        return configured
    try:
        cpus = float(len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        cpus = float(os.cpu_count() or 1)
    quota = cgroup_cpu_quota(cgroup_root)
    return max(0.1, min(cpus, quota)) if quota else cpus


class CostModel:
    """Per-call CPU cost (cores), split idle/active, as EWMAs of measured process CPU."""

    def __init__(self, prior: CostPrior = DEFAULT_PRIOR) -> None:
        self.prior = prior
        self._base = 0.0
        self._idle = prior.idle
        self._active = prior.active
        self.idle_samples = 0
        self.active_samples = 0
        self._sums = [0.0] * 5  # weighted sums of idle², idle·active, active², idle·spent, active·spent

    @property
    def base(self) -> float:
        return self._base

    @property
    def idle(self) -> float:
        fit = self._fit()
        if fit is not None:
            return fit[0]
        return self._idle if self.idle_samples >= MIN_SAMPLES else self.prior.idle

    @property
    def active(self) -> float:
        """The peak cost of a call, blended with the prior until :data:`TRUST_SAMPLES`; never below the idle cost."""
        fit = self._fit()
        learned = max(fit) if fit is not None else self._active
        if self.active_samples < MIN_SAMPLES:
            learned = self.prior.active
        trust = min(1.0, self.active_samples / TRUST_SAMPLES)
        return max(trust * learned + (1 - trust) * self.prior.active, self.idle)

    def _fit(self) -> tuple[float, float] | None:
        """(idle, active) by weighted least squares, or None while the samples cannot tell them apart."""
        ii, ia, aa, iy, ay = self._sums
        det = ii * aa - ia * ia
        if self.active_samples < MIN_SAMPLES or ii <= 0 or aa <= 0 or det < LS_MIN_SPREAD * ii * aa:
            return None
        idle, active = (iy * aa - ay * ia) / det, (ay * ii - iy * ia) / det
        return (idle, active) if idle >= 0 and active >= 0 else None

    def observe(self, process_cores: float, calls: int, active: int) -> None:
        """One sample: the process used ``process_cores`` with ``calls`` calls of which ``active`` were active."""
        if calls == 0:
            self._base += ALPHA * (process_cores - self._base)
            return
        spent = max(0.0, process_cores - self._base)
        idle_calls = calls - active
        sample = (idle_calls * idle_calls, idle_calls * active, active * active, idle_calls * spent, active * spent)
        self._sums = [(1 - LS_ALPHA) * total + value for total, value in zip(self._sums, sample, strict=True)]
        if active == 0:
            self._idle = self._learn(self._idle, spent / calls, self.idle_samples)
            self.idle_samples += 1
            return
        per_active = max(0.0, spent - self.idle * idle_calls) / active
        self._active = self._learn(self._active, per_active, self.active_samples)
        self.active_samples += 1

    @staticmethod
    def _learn(current: float, sample: float, samples: int) -> float:
        """EWMA; the first samples are averaged plainly so that the prior does not linger in the estimate."""
        weight = max(ALPHA, 1.0 / (samples + 1))
        return current + weight * (sample - current)

    def with_prior(self, prior: CostPrior) -> None:
        self.prior = prior
        if self.idle_samples == 0:
            self._idle = prior.idle
        if self.active_samples == 0:
            self._active = prior.active
