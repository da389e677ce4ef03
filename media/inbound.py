"""Reads a remote audio track as 16 kHz mono float32 PCM."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.frame import AudioFrame

from media.pcm import FloatArray, PcmConverter

logger = logging.getLogger(__name__)


class InboundAudioReader:
    """``async for pcm in reader`` yields the caller's audio as it arrives.

    Iteration ends when the track ends. Each item is one decoded frame (20 ms
    for Opus) resampled to ``rate``; nothing is buffered here beyond that.
    """

    def __init__(self, track: MediaStreamTrack, *, rate: int = 16_000) -> None:
        if track.kind != "audio":
            raise ValueError("InboundAudioReader needs an audio track")
        self._track = track
        self._converter = PcmConverter(rate)
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
            pcm = self._converter.convert(frame)
            if len(pcm):
                yield pcm  # type: ignore[misc]
