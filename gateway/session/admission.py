"""Admission that protects the admitted calls, self-calibrated, and graceful degradation when load spikes anyway.

A hand-set ``limits.max_calls`` does not hold across machines: 16 calls met p95 overhead 303 ms on the 2-core
reference machine, but on one of the same kind where a Whisper decode cost 127 ms (not 46) and Piper ran at
RTF 0.105 (not 0.048), 12 admitted calls got p95 1634 ms and 38 replies with underruns. So a call is admitted
only while both hold (``limits.max_calls`` stays the upper bound):

* **the calls already admitted keep their service level** (:class:`~gateway.session.service_level.ServiceLevel`:
  turn overhead p95, barge-in stop, reply underruns, synthesis speed under the current load), and
* **the projected CPU use stays under** ``admission.target_utilization`` (0.75): the cores busy now (the
  machine's, from ``/proc/stat``: on a machine shared with other programs, or with the callers, those count
  too), plus the growth of the idle admitted calls (``admission.growth_share`` of them starting to talk or
  be answered at once), plus the calls admitted in the last :data:`SETTLE_SECONDS` (not yet in the measured
  load) and the new one, each at its *peak* cost, learned online (:mod:`gateway.session.cost_model`).

A process with no call always takes one: it protects nobody by refusing. The headroom (how many more calls
fit) goes to ``/readyz``, ``/internal/load`` (a front routes by it: :mod:`gateway.app.workers`) and
``/metrics``. ``Retry-After`` is the expected time until a call ends (the calls' mean duration over their
count), bounded to 1..``admission.retry_after_max_seconds``.

Degradation (:data:`LEVELS`) steps up at once when the machine is busier than ``admission.degrade_utilization``
(partial transcripts shed) or ``degrade_strong_utilization`` or a real-time margin is missed (cheaper decoding),
and down one level per ``admission.degrade_hold_seconds`` of calm. It never touches final transcripts or
the reply's audio: the engines apply it through their ``set_degradation(level)`` hook, where they have one.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.base import SAMPLE_RATE
from gateway.config import GatewayConfig
from gateway.session.cost_model import CostModel, CostPrior, cpu_capacity
from gateway.session.load import LoadMonitor
from gateway.session.service_level import ServiceLevel
from gateway.voice.engines import Engines

logger = logging.getLogger(__name__)

#: Degradation levels, by index (``gateway.degradation`` in /readyz and /internal/load; a gauge in /metrics).
LEVELS = ("normal", "partials_shed", "low_cost_decoding")
#: Seconds a newly admitted call is counted at peak cost on top of the measured load (the CPU window is 2 s,
#: and a call's first reply, its costliest part, comes 5-8 s after it connects in the load test).
SETTLE_SECONDS = 10.0
BUSY_ALPHA = 0.1  # per 0.5 s sample
CALIBRATION_TEXT = "Thanks for calling. I can help you with that right away, just give me a moment."


@dataclass(frozen=True)
class Decision:
    """Whether one more call is admitted now, and the figures behind it."""

    reason: str | None  # None: admitted
    retry_after: int
    headroom_calls: int
    projected_utilization: float


class Admission:
    def __init__(self, config: GatewayConfig, load: LoadMonitor, *, capacity: float | None = None,
                 process_cpu: Callable[[], float] = time.process_time,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config.admission
        self._limits = config.limits
        self._load = load
        self._clock = clock
        self._process_cpu = process_cpu
        self.capacity = capacity if capacity is not None else cpu_capacity(self._config.cpus)
        # /proc/stat's busy share is of every CPU of the machine; spread over those we may use.
        self._busy_cpus = min(self.capacity, float(os.cpu_count() or 1))
        self.model = CostModel()
        self.service = ServiceLevel(config.admission, clock=clock)
        self.process_cores = 0.0
        self._busy_slow = 0.0  # the machine's busy cores, EWMA over ~5 s: a dip of other programs' load is no room
        self.level = 0
        self._last_cpu: tuple[float, float] | None = None
        self._calls = self._active = 0
        self._admitted: deque[float] = deque(maxlen=max(1, config.limits.max_calls))
        self._calm_since: float | None = None
        self._engines: Engines | None = None

    @property
    def enabled(self) -> bool:
        return self._config.enabled

    def set_engines(self, engines: Engines | None) -> None:
        self._engines = engines
        self._apply_level()

    def reset(self) -> None:
        """Back to normal decoding: the engines may outlive this process's admission (tests share one set)."""
        if self.level:
            self._set_level(0)

    def calibrated(self, prior: CostPrior) -> None:
        self.model.with_prior(prior)
        logger.info("admission: call cost prior from calibration: idle %.3f, active %.3f cores (%.1f CPUs)",
                    prior.idle, prior.active, self.capacity)

    # ------------------------------------------------------------ measuring

    def sample(self, now: float, calls: int, active: int) -> None:
        """Every CPU sample (0.5 s): learn the calls' cost, then step the degradation level."""
        cpu = self._process_cpu()
        if self._last_cpu is not None and now > self._last_cpu[0]:
            self.process_cores = max(0.0, (cpu - self._last_cpu[1]) / (now - self._last_cpu[0]))
            self.model.observe(self.process_cores, calls, active)
        self._last_cpu = (now, cpu)
        self._busy_slow += BUSY_ALPHA * (self._load.cpu_percent / 100 * self._busy_cpus - self._busy_slow)
        self._calls, self._active = calls, active
        if self.enabled:
            self._step_level(now)

    def admitted(self) -> None:
        self._admitted.append(self._clock())

    @property
    def busy_cores(self) -> float:
        """Cores in use now: the machine's busy share of our CPUs over 2 s or, if more, over ~5 s (a pause in another
        program's load measured at 44 % busy between 99 % readings), at least what this process itself uses."""
        return max(self._load.cpu_percent / 100 * self._busy_cpus, self._busy_slow, self.process_cores)

    @property
    def utilization(self) -> float:
        return self.busy_cores / self.capacity

    def _growth_cores(self, calls: int) -> float:
        settling = sum(1 for at in self._admitted if at >= self._clock() - SETTLE_SECONDS)
        # The settling ones already count at their peak. ``calls`` (the registry's count now) includes a burst's
        # calls that no load sample has seen yet: without it their number came off the idle calls already sampled.
        idle = max(0, max(calls, self._calls) - self._active - settling)
        return idle * self._config.growth_share * (self.model.active - self.model.idle) + settling * self.model.active

    # ------------------------------------------------------------ deciding

    def decide(self, calls: int) -> Decision:
        """Whether one more call keeps the ``calls`` admitted ones at their service level (see the module doc)."""
        target = self._config.target_utilization * self.capacity
        committed = self.busy_cores + self._growth_cores(calls)
        peak = max(self.model.active, 1e-3)
        projected = (committed + peak) / self.capacity
        headroom = max(0, min(self._limits.max_calls - calls, math.floor((target - committed) / peak)))
        if not self.enabled or calls == 0:
            retry = self._bounded(self._until_a_call_ends(calls)) if calls else 2  # no call to wait for
            return Decision(None, retry, max(1, headroom) if calls < self._limits.max_calls else 0, projected)
        violation = self.service.violation()
        if violation is not None:
            wait = min(self.service.seconds_until_clear(), self._until_a_call_ends(calls))
            return Decision(f"admitted calls miss their service level: {violation}", self._bounded(wait), 0,
                            projected)
        if headroom < 1:
            return Decision(f"projected CPU use {projected:.0%} of {self.capacity:g} CPUs with one more call",
                            self._bounded(self._until_a_call_ends(calls)), 0, projected)
        return Decision(None, 1, headroom, projected)

    def _until_a_call_ends(self, calls: int) -> float:
        """With ``calls`` calls of mean duration D under way, one ends about every D / calls seconds."""
        return self.service.call_seconds / max(1, calls)

    def _bounded(self, seconds: float) -> int:
        return max(1, min(self._config.retry_after_max_seconds, math.ceil(seconds)))

    # ------------------------------------------------------------ degrading

    def _target_level(self) -> int:
        c, limits = self._config, self._limits
        wait = self._load.asr_wait_ms(self._engines)
        utilization = self.utilization
        late = (bool(c.max_tts_rtf) and self.service.tts_rtf > c.max_tts_rtf) or (
            bool(limits.max_asr_wait_ms) and wait > limits.max_asr_wait_ms)
        if utilization >= c.degrade_strong_utilization or late:
            return 2
        if utilization >= c.degrade_utilization or (bool(limits.max_asr_wait_ms) and wait > limits.max_asr_wait_ms / 2):
            return 1
        return 0

    def _step_level(self, now: float) -> None:
        target = self._target_level()
        if target > self.level:
            self._set_level(target)
            self._calm_since = None
        elif target == self.level:
            self._calm_since = None
        elif self._calm_since is None:
            self._calm_since = now
        elif now - self._calm_since >= self._config.degrade_hold_seconds:
            self._set_level(self.level - 1)
            self._calm_since = now

    def _set_level(self, level: int) -> None:
        logger.warning("degradation: %s -> %s (CPUs %.0f %% busy, %d calls)", LEVELS[self.level], LEVELS[level],
                       100 * self.utilization, self._calls)
        self.level = level
        self._apply_level()

    def _apply_level(self) -> None:
        if self._engines is None:
            return
        for engine in (self._engines.asr, self._engines.tts):
            hook = getattr(engine, "set_degradation", None)
            if callable(hook):
                hook(self.level)

    # ------------------------------------------------------------ reporting

    def report(self, calls: int) -> dict[str, Any]:
        decision = self.decide(calls)
        return {
            "headroom_calls": decision.headroom_calls,
            "retry_after": decision.retry_after,
            "projected_utilization": round(decision.projected_utilization, 3),
            "utilization": round(self.utilization, 3),
            "cpus": self.capacity,
            "degradation_level": self.level,
            "degradation": LEVELS[self.level],
            "call_cost_cores": {"idle": round(self.model.idle, 4), "active": round(self.model.active, 4),
                                "prior": self.model.prior.source},
            "service_level": {"overhead_p95_ms": round(self.service.overhead_p95_ms, 1),
                              "barge_in_stop_p50_ms": round(self.service.barge_in_stop_p50_ms, 1),
                              "underruns": self.service.underruns, "tts_rtf": round(self.service.tts_rtf, 3)},
        }


async def calibrate(engines: Engines, partial_interval_seconds: float) -> CostPrior:
    """A prior for the call cost: one timed Whisper decode of 2 s and one timed synthesis (wall times).

    Engines off the CPU (``device`` cuda, remote) cost this process little: only the media part counts then.
    """
    noise = (np.random.default_rng(0).standard_normal(2 * SAMPLE_RATE) * 0.01).astype(np.float32)
    decode = 0.0
    if getattr(engines.asr, "device", "remote") == "cpu":
        decode = (await engines.asr.transcribe(noise)).compute_seconds
    rtf = 0.0
    if getattr(engines.tts, "device", "remote") == "cpu":
        started, audio_seconds = time.perf_counter(), 0.0
        async for piece in engines.tts.synthesize(CALIBRATION_TEXT):
            audio_seconds += len(piece.samples) / piece.sample_rate
        rtf = (time.perf_counter() - started) / max(audio_seconds, 0.1)
    return CostPrior.from_calibration(asr_decode_seconds=decode, partial_interval_seconds=partial_interval_seconds,
                                      tts_rtf=rtf)
