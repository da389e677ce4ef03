"""Wall-clock pacing of fixed-size audio frames, as aiortc's own tracks do it."""

from __future__ import annotations

import asyncio
import time


class FramePacer:
    """``await next_pts()`` returns each frame's timestamp when it is due: start + pts / rate.

    If the event loop stalled for longer than ``max_lag`` seconds, the clock is
    resynchronised instead of bursting the late frames out back to back.
    """

    def __init__(self, rate: int, frame_samples: int, *, max_lag: float = 0.2) -> None:
        self.rate = rate
        self.frame_samples = frame_samples
        self._max_lag = max_lag
        self._start: float | None = None
        self.pts = 0

    async def next_pts(self) -> int:
        if self._start is None:
            self._start = time.time()
            return self.pts
        self.pts += self.frame_samples
        wait = self._start + self.pts / self.rate - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -self._max_lag:
            self._start = time.time() - self.pts / self.rate
        return self.pts
