"""The gateway's voice: one audio track paced at 20 ms against the wall clock.

Audio is queued as tagged segments (a tag is the id of the reply it belongs
to). ``recv()`` hands aiortc one 20 ms frame per tick, silence when the queue
is empty; once Opus is negotiated, the frame's Opus packet instead (see
:mod:`media.opus`). ``clear()`` drops everything queued, so the next frame is silence:
audio stops within one frame.

The track counts the samples of each tag it has actually sent, and reports each
tag's :class:`PlayoutResult` to its listener exactly once: when a finished tag's
audio has all been sent, or when ``clear()`` cuts it (``interrupted``). That
playback position is what truncation is computed from; reporting it (rather than
being asked for it afterwards) lets the track forget the tag at once, so its
bookkeeping holds only the tags still playing.

``pause()`` holds the queue where it is: from the next frame on the track sends silence (neither
played nor an underrun), and ``resume()`` goes on from the exact sample it stopped at — how a
cough over a reply is told from an interruption without losing a word of the reply
(gateway/voice/interruptions.py). ``add_tap()`` hands every frame sent (the gateway's voice as
the caller hears it, silence included) to an echo canceller as its reference.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
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


@dataclass(frozen=True)
class PlayoutResult:
    """How one tag's audio was played out: the playback position and the gaps in it."""

    tag: str
    played_samples: int  # 48 kHz samples actually sent
    underrun_samples: int  # silence sent while the tag was playing but its audio had run out
    interrupted: bool  # cut by clear() rather than played to its end

    def __post_init__(self) -> None:
        if self.played_samples < 0 or self.underrun_samples < 0:
            raise ValueError("played_samples and underrun_samples cannot be negative")

    @property
    def played_ms(self) -> int:
        return self.played_samples * 1000 // RATE

    @property
    def underrun_ms(self) -> int:
        return self.underrun_samples * 1000 // RATE


class PlaybackListener(Protocol):
    def playback_started(self, tag: str, at: float) -> None:
        """The first frame holding ``tag``'s audio was handed to the encoder at ``at`` (monotonic)."""

    def playback_finished(self, result: PlayoutResult) -> None:
        """``result.tag`` is over: all of its audio was sent after ``finish()``, or ``clear()`` cut it.

        Called once per tag; the track has forgotten the tag by then. A tag finished without any
        audio pushed is reported at once, with nothing played."""


@dataclass
class _Segment:
    tag: str
    samples: Int16Array
    offset: int = 0


@dataclass
class _Playout:
    """What the track knows of a tag until its result is reported."""

    played: int = 0
    underrun: int = 0
    finished: bool = False


class OutboundAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, listener: PlaybackListener | None = None, *, max_buffered_seconds: float = 60.0) -> None:
        super().__init__()
        self._listener = listener
        self._segments: deque[_Segment] = deque()
        self._buffered = 0
        self._max_buffered = int(max_buffered_seconds * RATE)
        self._playouts: dict[str, _Playout] = {}  # tags pushed and not yet reported
        self._open: str | None = None  # the tag playing, not finished: silence now is an underrun
        self._space = asyncio.Event()
        self._space.set()
        self._pacer = FramePacer(RATE, FRAME_SAMPLES)
        self._opus: OpusFrameEncoder | None = None
        self._paused = False
        self._taps: list[Callable[[Int16Array], None]] = []

    def send_opus_packets(self) -> None:
        """Hand aiortc encoded Opus packets instead of frames (only when Opus was negotiated)."""
        self._opus = OpusFrameEncoder()

    def set_listener(self, listener: PlaybackListener) -> None:
        self._listener = listener

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        """Send silence from the next frame on, keeping every queued sample where it is (safe twice)."""
        self._paused = True

    def resume(self) -> None:
        """Go on from the exact sample :meth:`pause` stopped at (safe when not paused)."""
        self._paused = False

    def played_samples(self, tag: str) -> int:
        """Samples of ``tag`` sent so far (0 when the tag is unknown or already reported)."""
        playout = self._playouts.get(tag)
        return playout.played if playout is not None else 0

    def add_tap(self, tap: Callable[[Int16Array], None]) -> None:
        """Call ``tap`` with every 20 ms frame sent (48 kHz int16, silence included): an echo reference."""
        self._taps.append(tap)

    @property
    def buffered_seconds(self) -> float:
        return self._buffered / RATE

    @property
    def playing_tags(self) -> int:
        """Tags pushed whose result is not reported yet (a handful at most: the bookkeeping is bounded)."""
        return len(self._playouts)

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
        self._playouts.setdefault(tag, _Playout()).finished = False

    async def wait_for_space(self, ahead_seconds: float) -> None:
        """Wait until at most ``ahead_seconds`` of audio is queued."""
        while self._buffered > ahead_seconds * RATE:
            self._space.clear()
            await self._space.wait()

    def finish(self, tag: str) -> None:
        """No more audio will be pushed for ``tag``; its result is reported when it has all been sent."""
        playout = self._playouts.setdefault(tag, _Playout())
        playout.finished = True
        if not self._queued(tag):
            self._report_finished(tag)

    def clear(self) -> list[PlayoutResult]:
        """Drop all queued audio now: every tag not yet reported is, as interrupted. Returns those results."""
        playouts, self._playouts = self._playouts, {}
        self._segments.clear()
        self._buffered = 0
        self._open = None
        self._paused = False
        self._space.set()
        results = [PlayoutResult(tag, p.played, p.underrun, interrupted=True) for tag, p in playouts.items()]
        if self._listener is not None:
            for result in results:
                self._listener.playback_finished(result)
        return results

    async def recv(self) -> AudioFrame | Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._pacer.next_pts()
        frame_pcm = self._next_pcm()
        if self._opus is not None:
            return self._opus.encode(frame_pcm, pts)
        return int16_frame(np.zeros(FRAME_SAMPLES, np.int16) if frame_pcm is None else frame_pcm, RATE, pts)

    def next_frame(self) -> tuple[str | None, Int16Array | None]:
        """The next 20 ms frame, now and unpaced: (the tag its first sample belongs to, the samples), or
        (None, None) when nothing is queued (or the track is paused). For transports that pace the output
        themselves (a socket runs a little ahead of the wall clock: :mod:`gateway.transports.socket_audio`);
        the listener is told of starts and ends, and the taps hear the frame, exactly as with :meth:`recv`."""
        tag = self._segments[0].tag if self._segments and not self._paused else None
        return tag, self._next_pcm()

    def _next_pcm(self) -> Int16Array | None:
        """The next 20 ms frame to send (None for silence, and while paused); taps hear it."""
        frame_pcm = None if self._paused else self._take(FRAME_SAMPLES)
        if self._taps:
            heard = np.zeros(FRAME_SAMPLES, np.int16) if frame_pcm is None else frame_pcm
            for tap in self._taps:
                tap(heard)
        return frame_pcm

    def _take(self, count: int) -> Int16Array | None:
        """The next ``count`` samples (silence-padded), or None when nothing is queued."""
        if not self._segments:
            if self._open is not None:
                self._playouts[self._open].underrun += count
            return None
        out = np.zeros(count, np.int16)
        filled = 0
        now = time.monotonic()
        while filled < count and self._segments:
            segment = self._segments[0]
            playout = self._playouts[segment.tag]
            n = min(count - filled, len(segment.samples) - segment.offset)
            out[filled : filled + n] = segment.samples[segment.offset : segment.offset + n]
            first = playout.played == 0
            segment.offset += n
            filled += n
            playout.played += n
            self._buffered -= n
            if first and self._listener is not None:
                self._listener.playback_started(segment.tag, now)
            self._open = segment.tag
            if segment.offset >= len(segment.samples):
                self._segments.popleft()
                if playout.finished and not self._queued(segment.tag):
                    self._report_finished(segment.tag)
        self._space.set()
        return out

    def _queued(self, tag: str) -> bool:
        return any(segment.tag == tag for segment in self._segments)

    def _report_finished(self, tag: str) -> None:
        playout = self._playouts.pop(tag)
        if self._open == tag:
            self._open = None
        if self._listener is not None:
            self._listener.playback_finished(PlayoutResult(tag, playout.played, playout.underrun, interrupted=False))
