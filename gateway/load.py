"""Measured load of this process, for admission control and the worker pool.

Capacity is not a hand-set constant alone: besides ``limits.max_calls``, a
process stops admitting calls while its event loop runs late (every call's
audio pacing shares that loop) or while speech recognition jobs wait too long
in the queue (end-of-turn transcripts would come late).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from gateway.config import LimitsConfig
from gateway.engines import Engines

WINDOW_SECONDS = 2.0
SAMPLE_INTERVAL = 0.1


class LoadMonitor:
    def __init__(self, limits: LimitsConfig) -> None:
        self._limits = limits
        self._lags: deque[tuple[float, float]] = deque()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._sample(), name="load-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

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
        return None

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + SAMPLE_INTERVAL
            await asyncio.sleep(SAMPLE_INTERVAL)
            now = time.monotonic()
            self._lags.append((now, max(0.0, loop.time() - expected)))
            while self._lags and self._lags[0][0] < now - WINDOW_SECONDS:
                self._lags.popleft()
