"""The gateway's own voice, as a reference for removing it from the caller's microphone.

The output's tap hands this every 20 ms frame sent (48 kHz int16, silence included); it keeps
the last seconds at 16 kHz. Each microphone chunk is paired with as many reference samples,
read on from where the previous chunk's ended — one sample clock for both directions, so
network jitter does not move the alignment; only when the two clocks drift apart by more than
:data:`RESYNC_SAMPLES` (a stall, a burst) does it re-align to the newest reference, and the
canceller's delay estimate then follows (engines/echo.py).
"""

from __future__ import annotations

import numpy as np

from engines.base import SAMPLE_RATE, FloatArray
from engines.echo import EchoStream
from media.pcm import Int16Array

DECIMATION = 3  # 48 kHz → 16 kHz
KEEP_SAMPLES = 4 * SAMPLE_RATE
RESYNC_SAMPLES = SAMPLE_RATE // 5


class EchoReference:
    """What the caller heard from the gateway, read in step with the caller's microphone."""

    def __init__(self) -> None:
        self._samples = np.zeros(0, np.float32)
        self._written = 0  # reference samples ever written (16 kHz)
        self._read = 0  # the next sample a microphone chunk pairs with
        self.resyncs = 0

    def heard(self, frame: Int16Array) -> None:
        """The output's tap: one frame sent at 48 kHz."""
        usable = len(frame) - len(frame) % DECIMATION
        pcm = frame[:usable].astype(np.float32).reshape(-1, DECIMATION).mean(axis=1) / 32768.0
        self._samples = np.concatenate([self._samples, pcm])[-KEEP_SAMPLES:]
        self._written += len(pcm)

    def take(self, count: int) -> FloatArray:
        """The ``count`` reference samples sent while the next ``count`` microphone samples were captured."""
        if abs(self._written - count - self._read) > RESYNC_SAMPLES:
            self._read = max(0, self._written - count)
            self.resyncs += 1
        start = self._read - (self._written - len(self._samples))
        self._read += count
        out = np.zeros(count, np.float32)
        lo, hi = max(0, start), min(len(self._samples), start + count)
        if hi > lo:
            out[lo - start : hi - start] = self._samples[lo:hi]
        return out


class EchoSuppression:
    """One call's echo path: the reference and the canceller it feeds."""

    def __init__(self, stream: EchoStream) -> None:
        self.reference = EchoReference()
        self._stream = stream

    async def clean(self, mic: FloatArray) -> FloatArray:
        """``mic`` without the gateway's own voice."""
        return await self._stream.process(mic, self.reference.take(len(mic)))
