"""A bounded buffer of the caller's recent audio, addressed by absolute sample."""

from __future__ import annotations

import numpy as np

from engines.base import FloatArray


class RollingAudio:
    def __init__(self, capacity_samples: int) -> None:
        self._buffer = np.zeros(capacity_samples, np.float32)
        self._capacity = capacity_samples
        self.end = 0  # absolute index one past the newest sample

    @property
    def start(self) -> int:
        """Oldest absolute sample still held."""
        return max(0, self.end - self._capacity)

    def append(self, samples: FloatArray) -> None:
        n = len(samples)
        if n >= self._capacity:
            self._buffer[:] = samples[-self._capacity :]
        else:
            pos = self.end % self._capacity
            first = min(n, self._capacity - pos)
            self._buffer[pos : pos + first] = samples[:first]
            self._buffer[: n - first] = samples[first:]
        self.end += n

    def slice(self, start: int, end: int) -> FloatArray:
        """Samples ``[start, end)``, clipped to what is still held."""
        start, end = max(start, self.start), min(end, self.end)
        if end <= start:
            return np.zeros(0, np.float32)
        a, b = start % self._capacity, end % self._capacity
        if a < b:
            return self._buffer[a:b].copy()
        return np.concatenate([self._buffer[a:], self._buffer[:b]])
