"""Where a conversation's replies are heard: the output the voice layer talks to.

The voice layer is typed against this protocol, not against the WebRTC track, so
that a transport other than WebRTC (a WebSocket, a Twilio media stream) can
supply its own output. :class:`media.OutboundAudioTrack` is the WebRTC one.

An output plays tagged 48 kHz int16 audio (a tag is a reply's response id) and
reports each tag's :class:`PlayoutResult` to its listener once, when the tag has
played to its end after ``finish()`` or when ``clear()`` cut it. Truncation, the
``gateway.response.playback`` event and ``output_audio_buffer.*`` events are all
derived from those reports, never by asking the output afterwards.

``pause()``/``resume()`` hold and release the queue at the exact sample (a false interruption resumes
the reply where it stopped); ``add_tap()`` gives the echo canceller every frame the caller hears.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from media.outbound import RATE as OUTPUT_RATE
from media.outbound import PlaybackListener, PlayoutResult
from media.pcm import Int16Array

__all__ = ["OUTPUT_RATE", "AudioOutput", "PlaybackListener", "PlayoutResult"]


class AudioOutput(Protocol):
    """A paced, clearable audio output: at most one frame of audio is heard after ``clear()``."""

    @property
    def buffered_seconds(self) -> float:
        """Audio queued and not yet played."""

    def set_listener(self, listener: PlaybackListener) -> None:
        """Who hears when each tag starts playing and how it ended."""

    def push(self, tag: str, samples: Int16Array) -> None:
        """Queue 1-D int16 samples at :data:`OUTPUT_RATE` for ``tag``."""

    def finish(self, tag: str) -> None:
        """No more audio comes for ``tag``: report its result once what is queued has played."""

    def clear(self) -> list[PlayoutResult]:
        """Drop everything queued now; every tag not yet reported is reported (and returned) as interrupted."""

    async def wait_for_space(self, ahead_seconds: float) -> None:
        """Return once at most ``ahead_seconds`` of audio is queued (synthesis keeps this far ahead)."""

    @property
    def paused(self) -> bool:
        """Held by :meth:`pause`."""

    def pause(self) -> None:
        """Send silence from the next frame on, keeping every queued sample where it is."""

    def resume(self) -> None:
        """Go on from the exact sample :meth:`pause` stopped at."""

    def played_samples(self, tag: str) -> int:
        """Samples of ``tag`` sent so far."""

    def add_tap(self, tap: Callable[[Int16Array], None]) -> None:
        """Call ``tap`` with every frame sent at :data:`OUTPUT_RATE` (silence included): the echo reference."""
