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

The subclass reads aiortc's private fields (:data:`RELIED_ON`), so pyproject
pins the aiortc versions it was tested with (1.14 and 1.16 have the same
``jitterbuffer.py``). Should another aiortc lack them, :func:`set_audio_prefetch`
logs a warning and leaves aiortc's own buffer in place: 80 ms more latency and
aiortc's handling of losses, instead of a crash on the first packet.
"""

from __future__ import annotations

import logging
from importlib import metadata

from aiortc import rtcrtpreceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from aiortc.utils import uint16_add

logger = logging.getLogger(__name__)

AIORTC_DEFAULT_PREFETCH = 4
#: What :class:`AudioPrefetchJitterBuffer` uses of aiortc's JitterBuffer besides its public interface.
RELIED_ON = ("_origin", "_packets", "_capacity", "_prefetch", "_is_video", "remove")
_AIORTC_JITTER_BUFFER = JitterBuffer  # what aiortc.rtcrtpreceiver instantiates unless replaced here
_audio_prefetch = AIORTC_DEFAULT_PREFETCH
_installed = False


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


def missing_internals() -> list[str]:
    """What of :data:`RELIED_ON` the installed aiortc's JitterBuffer lacks (an empty list: nothing)."""
    try:
        probe = _AIORTC_JITTER_BUFFER(capacity=16, prefetch=AIORTC_DEFAULT_PREFETCH, is_video=False)
    except (TypeError, ValueError, AssertionError) as exc:
        return [f"JitterBuffer(capacity, prefetch, is_video) ({exc})"]
    missing = [name for name in RELIED_ON[:-1] if not hasattr(probe, name)]
    if not callable(getattr(probe, "remove", None)):
        missing.append("remove")
    if not hasattr(rtcrtpreceiver, "JitterBuffer"):
        missing.append("aiortc.rtcrtpreceiver.JitterBuffer")
    return missing


def set_audio_prefetch(frames: int) -> bool:
    """Frames (20 ms each) an audio packet waits for before decoding; 0 to 8.

    Returns whether it took effect: False (and a warning) when the installed aiortc's JitterBuffer lacks
    what this module relies on, and aiortc's own buffer stays in place.
    """
    global _audio_prefetch, _installed
    if not 0 <= frames <= 8:
        raise ValueError("audio prefetch must be between 0 and 8 frames")
    _audio_prefetch = frames
    missing = missing_internals()
    _installed = not missing
    if missing:
        logger.warning("aiortc %s: its JitterBuffer lacks %s, which media.jitter relies on; keeping aiortc's own "
                       "buffer (%d frames of prefetch, not %d; see the aiortc pin in pyproject.toml)",
                       _aiortc_version(), ", ".join(missing), AIORTC_DEFAULT_PREFETCH, frames)
    rtcrtpreceiver.JitterBuffer = (  # type: ignore[attr-defined]
        AudioPrefetchJitterBuffer if _installed else _AIORTC_JITTER_BUFFER)
    return _installed


def audio_prefetch() -> int:
    """The audio prefetch of receivers created from now on, in frames."""
    return _audio_prefetch if _installed else AIORTC_DEFAULT_PREFETCH


def _aiortc_version() -> str:
    try:
        return metadata.version("aiortc")
    except metadata.PackageNotFoundError:
        return "(version unknown)"
