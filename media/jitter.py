"""Receive-side jitter buffer depth for audio.

aiortc's RTCRtpReceiver holds audio packets in a JitterBuffer with a prefetch
of 4 frames: every inbound 20 ms Opus frame waits for four more before it is
decoded, adding 80 ms to everything the gateway hears. aiortc has no public
setting for it, so this module is the one, contained extension point: it
replaces the JitterBuffer class that ``aiortc.rtcrtpreceiver`` instantiates
with a subclass that caps the audio prefetch. Video buffers are untouched.
Call :func:`set_audio_prefetch` once at start-up (it affects every receiver
created afterwards in this process).
"""

from __future__ import annotations

from aiortc import rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer

AIORTC_DEFAULT_PREFETCH = 4
_audio_prefetch = AIORTC_DEFAULT_PREFETCH


class AudioPrefetchJitterBuffer(JitterBuffer):
    """aiortc's JitterBuffer with the audio prefetch set by :func:`set_audio_prefetch`."""

    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
        if not is_video:
            prefetch = _audio_prefetch
        super().__init__(capacity, prefetch=prefetch, is_video=is_video)


def set_audio_prefetch(frames: int) -> None:
    """Frames (20 ms each) an audio packet waits for before decoding; 0 to 8."""
    global _audio_prefetch
    if not 0 <= frames <= 8:
        raise ValueError("audio prefetch must be between 0 and 8 frames")
    _audio_prefetch = frames
    rtcrtpreceiver.JitterBuffer = AudioPrefetchJitterBuffer  # type: ignore[misc]


def audio_prefetch() -> int:
    return _audio_prefetch
