"""Receive-side jitter buffer depth for audio.

aiortc's RTCRtpReceiver holds audio packets in a JitterBuffer with a prefetch
of 4 frames: every inbound 20 ms Opus frame waits for four more before it is
decoded, adding 80 ms to everything the gateway hears. aiortc has no public
setting for it, so this module is the one, contained extension point: it
replaces the JitterBuffer class that ``aiortc.rtcrtpreceiver`` instantiates
with a subclass that caps the audio prefetch. Video buffers are untouched.
Call :func:`set_audio_prefetch` once at start-up (it affects every receiver
created afterwards in this process).

The subclass also gives up on a lost audio packet once ``prefetch + 1`` newer
packets are waiting. aiortc's buffer waits until 16 newer packets have
arrived (320 ms) and then keeps that backlog, so every lost packet would add
a stall and, afterwards, up to 300 ms of latency for the rest of the call.
Here a loss costs one 20 ms gap in the audio and no added delay; the prefetch
is also the reordering the buffer tolerates.
"""

from __future__ import annotations

from aiortc import rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add

AIORTC_DEFAULT_PREFETCH = 4
_audio_prefetch = AIORTC_DEFAULT_PREFETCH


class AudioPrefetchJitterBuffer(JitterBuffer):
    """aiortc's JitterBuffer with the audio prefetch set by :func:`set_audio_prefetch`."""

    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
        if not is_video:
            prefetch = _audio_prefetch
        super().__init__(capacity, prefetch=prefetch, is_video=is_video)
        self._audio_patience = prefetch + 1

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli_flag, frame = super().add(packet)
        if frame is None and not self._is_video:
            frame = self._release_across_gap()
        return pli_flag, frame

    def _release_across_gap(self) -> JitterFrame | None:
        """Audio frames are single packets: a gap need not hold back the packets around it.

        The oldest packet is released once ``prefetch`` newer packets wait (aiortc's
        rule, counted across gaps); an empty oldest slot is given up as lost once
        ``prefetch + 1`` newer packets wait.
        """
        if self._origin is None:
            return None
        present = [i for i in range(self._capacity)
                   if self._packets[(self._origin + i) % self._capacity] is not None]
        if not present:
            return None
        if present[0] > 0:  # the oldest packet(s) are missing
            if len(present) < self._prefetch + 1:
                return None
            self._origin = uint16_add(self._origin, present[0])
        if len(present) - 1 < max(1, self._prefetch):
            return None
        oldest = self._packets[self._origin % self._capacity]
        assert oldest is not None
        self.remove(1)
        return JitterFrame(data=getattr(oldest, "_data", b""), timestamp=oldest.timestamp)


def set_audio_prefetch(frames: int) -> None:
    """Frames (20 ms each) an audio packet waits for before decoding; 0 to 8."""
    global _audio_prefetch
    if not 0 <= frames <= 8:
        raise ValueError("audio prefetch must be between 0 and 8 frames")
    _audio_prefetch = frames
    rtcrtpreceiver.JitterBuffer = AudioPrefetchJitterBuffer  # type: ignore[attr-defined]


def audio_prefetch() -> int:
    return _audio_prefetch
