"""Measured load of this process, for admission control and the worker pool.

Capacity is not a hand-set constant alone: besides ``limits.max_calls``, a
process stops admitting calls while its event loop runs late (every call's
audio pacing shares that loop) or while speech recognition jobs wait too long
in the queue (end-of-turn transcripts would come late), and, when
``limits.max_cpu_percent`` is set, while the machine's CPUs are that busy
(Linux ``/proc/stat``; the callers' audio shares those cores with every model).
Every CPU sample is also handed to ``on_cpu_sample`` (the admission model of
:mod:`gateway.session.admission` learns the calls' cost from it); ``tasks`` holds
the monitor's own background work (the admission's calibration), closed by :meth:`LoadMonitor.stop`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from gateway.aio import TaskSet
from gateway.config import LimitsConfig
from gateway.voice.engines import Engines

WINDOW_SECONDS = 2.0
SAMPLE_INTERVAL = 0.1
CPU_SAMPLE_EVERY = 5  # lag samples: the CPU is read every 0.5 s

CpuReader = Callable[[], "tuple[float, float] | None"]


def read_proc_stat(path: Path = Path("/proc/stat")) -> tuple[float, float] | None:
    """(busy, total) time of all CPUs since boot, in clock ticks; None where there is no /proc/stat."""
    try:
        with path.open() as stat:
            fields = [float(v) for v in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    if len(fields) < 4:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


class LoadMonitor:
    def __init__(self, limits: LimitsConfig, *, cpu_reader: CpuReader = read_proc_stat) -> None:
        self._limits = limits
        self._lags: deque[tuple[float, float]] = deque()
        self._cpu: deque[tuple[float, float, float]] = deque()  # (at, busy, total)
        self._cpu_reader = cpu_reader
        self._task: asyncio.Task[None] | None = None
        self.on_cpu_sample: Callable[[float], None] | None = None
        self.tasks = TaskSet("load-monitor")

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._sample(), name="load-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.tasks.close()

    @property
    def loop_lag_ms(self) -> float:
        """The mean event-loop lag over the last two seconds.

        A mean, not the worst sample: answering one offer (certificates, ICE
        gathering) can stall the loop briefly; only a loop that is late again and
        again is overloaded.
        """
        cutoff = time.monotonic() - WINDOW_SECONDS
        recent = [lag for at, lag in self._lags if at >= cutoff]
        return sum(recent) / len(recent) * 1000 if recent else 0.0

    @property
    def cpu_percent(self) -> float:
        """How busy the machine's CPUs were over the last two seconds (0..100)."""
        if len(self._cpu) < 2:
            return 0.0
        _, busy0, total0 = self._cpu[0]
        _, busy1, total1 = self._cpu[-1]
        return 100.0 * (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0

    def sample_cpu(self, now: float) -> None:
        reading = self._cpu_reader()
        if reading is None:
            return
        self._cpu.append((now, *reading))
        while len(self._cpu) > 2 and self._cpu[1][0] <= now - WINDOW_SECONDS:
            self._cpu.popleft()

    @staticmethod
    def asr_wait_ms(engines: Engines | None) -> float:
        if engines is None:
            return 0.0
        return float(getattr(engines.asr, "recent_wait_ms", 0.0))

    def overload_reason(self, engines: Engines | None) -> str | None:
        """Why this process should not take another call now, or None."""
        if self._limits.max_loop_lag_ms and self.loop_lag_ms > self._limits.max_loop_lag_ms:
            return f"event loop running {self.loop_lag_ms:.0f} ms late"
        wait = self.asr_wait_ms(engines)
        if self._limits.max_asr_wait_ms and wait > self._limits.max_asr_wait_ms:
            return f"speech recognition queue wait {wait:.0f} ms"
        if self._limits.max_cpu_percent and self.cpu_percent > self._limits.max_cpu_percent:
            return f"CPUs {self.cpu_percent:.0f} % busy"
        return None

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        samples = 0
        while True:
            expected = loop.time() + SAMPLE_INTERVAL
            await asyncio.sleep(SAMPLE_INTERVAL)
            now = time.monotonic()
            self._lags.append((now, max(0.0, loop.time() - expected)))
            while self._lags and self._lags[0][0] < now - WINDOW_SECONDS:
                self._lags.popleft()
            if samples % CPU_SAMPLE_EVERY == 0:  # also reported in /internal/load when not a limit
                self.sample_cpu(now)
                if self.on_cpu_sample is not None:
                    self.on_cpu_sample(now)
            samples += 1
