"""How fast a caller may send client events: a token bucket, and a throttled notice when it drops some."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """Token bucket: ``rate`` events per second with a burst of ``2 × rate``."""

    def __init__(self, rate: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1 event per second")
        self._rate = rate
        self._capacity = 2.0 * rate
        self._tokens = self._capacity
        self._clock = clock
        self._last = clock()

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class EventRateLimit:
    """A :class:`RateLimiter` for client events that counts what it drops and says when to tell the caller.

    The caller hears of dropped events at most once per ``notice_interval`` seconds, so a flood
    does not turn into a flood of ``error`` events back.
    """

    def __init__(self, rate: int, *, notice_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limiter = RateLimiter(rate, clock=clock)
        self._clock = clock
        self._notice_interval = notice_interval
        self._noticed_at: float | None = None
        self.dropped = 0

    def allow(self) -> bool:
        if self._limiter.allow():
            return True
        self.dropped += 1
        return False

    def notice_due(self) -> bool:
        """After a drop: whether the caller should be told now."""
        now = self._clock()
        if self._noticed_at is not None and now - self._noticed_at < self._notice_interval:
            return False
        self._noticed_at = now
        return True
