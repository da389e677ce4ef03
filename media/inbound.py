"""Reads a remote audio track as 16 kHz mono float32 PCM, no faster than real time."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.frame import AudioFrame

from media.budget import AudioTooFast, RealTimeBudget, RealTimeGate
from media.pcm import FloatArray, PcmConverter

__all__ = ["AudioTooFast", "InboundAudioReader", "RealTimeBudget"]

logger = logging.getLogger(__name__)


class InboundAudioReader:
    """``async for pcm in reader`` yields the caller's audio as it arrives.

    Iteration ends when the track ends. Each item is one decoded frame (20 ms
    for Opus) resampled to ``rate``; nothing is buffered here beyond that. Audio
    beyond ``budget`` is dropped (:attr:`frames_dropped`, :attr:`seconds_dropped`);
    ``label`` names the call in the log.
    """

    def __init__(self, track: MediaStreamTrack, *, rate: int = 16_000, budget: RealTimeBudget | None = None,
                 label: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        if track.kind != "audio":
            raise ValueError("InboundAudioReader needs an audio track")
        self._track = track
        self._converter = PcmConverter(rate)
        self._gate = RealTimeGate(budget, clock=clock)
        self._label = label
        self.frames_received = 0

    async def __aiter__(self) -> AsyncIterator[FloatArray]:
        while True:
            try:
                frame = await self._track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, AudioFrame):
                continue
            self.frames_received += 1
            if not self._admit(frame.samples / frame.sample_rate if frame.sample_rate else 0.0):
                continue
            pcm = self._converter.convert(frame)
            if len(pcm):
                yield pcm  # type: ignore[misc]

    @property
    def frames_dropped(self) -> int:
        return self._gate.chunks_dropped

    @property
    def seconds_dropped(self) -> float:
        return self._gate.seconds_dropped

    def _admit(self, seconds: float) -> bool:
        """Whether a frame of ``seconds`` is within the budget (may raise :class:`AudioTooFast`)."""
        admitted = self._gate.admit(seconds)
        if not admitted and self._gate.chunks_dropped == 1:
            logger.warning("%s: audio arrives faster than real time (more than %.1f s ahead); dropping the excess",
                           self._label or "inbound audio", self._gate.budget.lead_seconds)
        return admitted
