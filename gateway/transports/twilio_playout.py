"""What a Twilio caller has heard: the frames in flight, and where a pause's ``clear`` cut them.

Twilio echoes a ``mark`` once the audio before it has played, and on ``clear`` it drops what it
buffered and echoes every mark still in it — the same message either way, so an echo that arrives
after a ``clear`` cannot say whether its frame was played. The gateway therefore times the clear:

* each frame sent is kept (:class:`SentFrame`: its 8 kHz samples, and ``play_end``, when the pacer
  expects it played — its model of the far end: playing on arrival, at 1x, no network);
* each echo of a played frame measures the model's offset from what the gateway sees
  (:class:`PlayoutClock`: echo arrival − ``play_end``, i.e. network both ways plus Twilio's buffer);
* right after its ``clear`` the gateway sends a mark of its own (``clear-N``) with no audio before
  it: Twilio echoes it at once, after the marks the clear flushed. Its arrival, less the offset, is
  the model time at which the clear reached Twilio: the frames whose ``play_end`` is not later were
  heard, the rest were dropped (:meth:`MarksInFlight.split`) — and a resume sends those again.

The cut is right to within the echoes' jitter (one message on the socket); a frame half played when
the clear arrived is sent again whole, so a resume repeats at most a frame (2–19 ms measured against
the simulated Twilio, tests/transports/test_twilio_pause.py). Without an echo yet (the reply's first
RTT), or from a peer that never echoes ``clear-N`` (Twilio's documentation promises the echo once
the audio before a mark has played, and there is none before this one; the transport waits 0.5 s),
the model alone decides: what it says had played when the clear was sent.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from media.pcm import Int16Array


@dataclass(frozen=True)
class SentFrame:
    seq: int  # the mark that follows it
    tag: str
    heard_samples: int  # 48 kHz samples of ``tag`` the caller has heard once this frame is played
    wire: Int16Array  # its 8 kHz samples, to send again after a clear
    samples: Int16Array  # ... and its 48 kHz ones, for the echo canceller's reference
    play_end: float  # when the pacer's model has it played (monotonic)


class PlayoutClock:
    """The offset between the pacer's model and the echoes of the frames Twilio played."""

    def __init__(self) -> None:
        self.offset: float | None = None

    def echoed(self, frame: SentFrame, at: float) -> None:
        self.offset = at - frame.play_end

    def cut_at(self, echoed_at: float | None, cleared_at: float) -> float:
        """The model time when a clear sent at ``cleared_at`` (sentinel back at ``echoed_at``) cut the playout."""
        if echoed_at is None or self.offset is None:
            return cleared_at  # no echo to go by: what the model had played when the clear went out
        return echoed_at - self.offset


class MarksInFlight:
    """The frames sent whose mark has not come back, oldest first; at most ``max_marks`` (older ones forgotten)."""

    def __init__(self, max_marks: int) -> None:
        self._frames: deque[SentFrame] = deque()
        self._max = max_marks
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._frames)

    def append(self, frame: SentFrame) -> None:
        if len(self._frames) >= self._max:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(frame)

    def echoed_through(self, seq: int) -> list[SentFrame]:
        """The frames up to mark ``seq``: played."""
        out: list[SentFrame] = []
        while self._frames and self._frames[0].seq <= seq:
            out.append(self._frames.popleft())
        return out

    def last_seq(self, tag: str) -> int | None:
        return max((f.seq for f in self._frames if f.tag == tag), default=None)

    def take_all(self) -> list[SentFrame]:
        frames = list(self._frames)
        self._frames.clear()
        return frames

    def clear(self) -> None:
        self._frames.clear()

    @staticmethod
    def split(frames: list[SentFrame], cut_at: float) -> tuple[list[SentFrame], list[SentFrame]]:
        """(heard, dropped): the frames played in full by model time ``cut_at``, and the rest."""
        index = next((i for i, frame in enumerate(frames) if frame.play_end > cut_at + 1e-6), len(frames))
        return frames[:index], frames[index:]
