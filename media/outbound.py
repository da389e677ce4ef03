"""The gateway's voice: one audio track paced at 20 ms against the wall clock.

Audio is queued as tagged segments (a tag is the id of the reply it belongs
to). ``recv()`` hands aiortc one 20 ms frame per tick, silence when the queue
is empty; once Opus is negotiated, the frame's Opus packet instead (see
:mod:`media.opus`). ``clear()`` drops everything queued, so the next frame is silence:
audio stops within one frame. The track counts the samples of each tag it has
actually sent; that playback position is what truncation is computed from.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.frame import AudioFrame
from av.packet import Packet

from media.opus import OpusFrameEncoder
from media.pacing import FramePacer
from media.pcm import Int16Array, int16_frame

RATE = 48_000
PTIME = 0.020
FRAME_SAMPLES = int(RATE * PTIME)


class PlaybackListener(Protocol):
    def playback_started(self, tag: str, at: float) -> None:
        """The first frame holding ``tag``'s audio was handed to the encoder at ``at`` (monotonic)."""

    def playback_finished(self, tag: str, played_samples: int) -> None:
        """Everything queued for a finished ``tag`` has been sent."""


@dataclass
class _Segment:
    tag: str
    samples: Int16Array
    offset: int = 0


class OutboundAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, listener: PlaybackListener | None = None, *, max_buffered_seconds: float = 60.0) -> None:
        super().__init__()
        self._listener = listener
        self._segments: deque[_Segment] = deque()
        self._buffered = 0
        self._max_buffered = int(max_buffered_seconds * RATE)
        self._played: dict[str, int] = {}
        self._underrun: dict[str, int] = {}
        self._open: str | None = None  # the tag playing, not finished: silence now is an underrun
        self._finished: set[str] = set()
        self._space = asyncio.Event()
        self._space.set()
        self._pacer = FramePacer(RATE, FRAME_SAMPLES)
        self._opus: OpusFrameEncoder | None = None

    def send_opus_packets(self) -> None:
        """Hand aiortc encoded Opus packets instead of frames (only when Opus was negotiated)."""
        self._opus = OpusFrameEncoder()

    def set_listener(self, listener: PlaybackListener) -> None:
        self._listener = listener

    @property
    def buffered_seconds(self) -> float:
        return self._buffered / RATE

    def played_samples(self, tag: str) -> int:
        return self._played.get(tag, 0)

    def underrun_samples(self, tag: str) -> int:
        """Silence sent in the middle of ``tag``: its audio ran out before it was finished."""
        return self._underrun.get(tag, 0)

    def push(self, tag: str, samples: Int16Array) -> None:
        """Queue 48 kHz mono int16 audio for ``tag``. Raises if the buffer is full."""
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise ValueError("push() takes 1-D int16 samples at 48 kHz")
        if not len(samples):
            return
        if self._buffered + len(samples) > self._max_buffered:
            raise BufferError("outbound audio buffer is full")
        self._segments.append(_Segment(tag, samples))
        if self._open != tag:
            self._open = None
        self._buffered += len(samples)
        self._finished.discard(tag)
        self._played.setdefault(tag, 0)

    async def wait_for_space(self, ahead_seconds: float) -> None:
        """Wait until at most ``ahead_seconds`` of audio is queued."""
        while self._buffered > ahead_seconds * RATE:
            self._space.clear()
            await self._space.wait()

    def finish(self, tag: str) -> None:
        """No more audio will be pushed for ``tag``; report when it has all been sent."""
        self._finished.add(tag)
        if not any(segment.tag == tag for segment in self._segments):
            self._report_finished(tag)

    def clear(self) -> dict[str, int]:
        """Drop all queued audio now. Returns the samples played of each dropped tag."""
        dropped = {segment.tag: self._played.get(segment.tag, 0) for segment in self._segments}
        self._segments.clear()
        self._buffered = 0
        self._open = None
        self._space.set()
        for tag in dropped:
            self._finished.discard(tag)
        return dropped

    def forget(self, tag: str) -> None:
        """Release the bookkeeping of a tag that is over."""
        self._played.pop(tag, None)
        self._underrun.pop(tag, None)
        self._finished.discard(tag)
        if self._open == tag:
            self._open = None

    async def recv(self) -> AudioFrame | Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._pacer.next_pts()
        frame_pcm = self._take(FRAME_SAMPLES)
        if self._opus is not None:
            return self._opus.encode(frame_pcm, pts)
        return int16_frame(np.zeros(FRAME_SAMPLES, np.int16) if frame_pcm is None else frame_pcm, RATE, pts)

    def _take(self, count: int) -> Int16Array | None:
        """The next ``count`` samples (silence-padded), or None when nothing is queued."""
        if not self._segments:
            if self._open is not None:
                self._underrun[self._open] = self._underrun.get(self._open, 0) + count
            return None
        out = np.zeros(count, np.int16)
        filled = 0
        now = time.monotonic()
        while filled < count and self._segments:
            segment = self._segments[0]
            n = min(count - filled, len(segment.samples) - segment.offset)
            out[filled : filled + n] = segment.samples[segment.offset : segment.offset + n]
            first = self._played.get(segment.tag, 0) == 0
            segment.offset += n
            filled += n
            self._played[segment.tag] = self._played.get(segment.tag, 0) + n
            self._buffered -= n
            if first and self._listener is not None:
                self._listener.playback_started(segment.tag, now)
            self._open = segment.tag
            if segment.offset >= len(segment.samples):
                self._segments.popleft()
                if segment.tag in self._finished and not any(s.tag == segment.tag for s in self._segments):
                    self._report_finished(segment.tag)
        self._space.set()
        return out

    def _report_finished(self, tag: str) -> None:
        self._finished.discard(tag)
        if self._open == tag:
            self._open = None
        if self._listener is not None:
            self._listener.playback_finished(tag, self._played.get(tag, 0))
