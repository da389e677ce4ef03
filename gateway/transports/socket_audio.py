"""The gateway's voice on a socket: 20 ms frames paced against the wall clock, a little ahead of it.

A WebSocket (``response.output_audio.delta``) or a Twilio media stream (``media``) carries the
replies' audio as messages, not as RTP that a jitter buffer plays out. :class:`SocketAudio` is the
:class:`~gateway.voice.output.AudioOutput` such a transport gives its session: an
:class:`media.OutboundAudioTrack` (the same queue, clear and playout reports as WebRTC's), whose
frames :meth:`SocketAudio.run` takes every 20 ms with :meth:`~media.OutboundAudioTrack.next_frame`,
converts to the wire's rate (av's resampler) and hands to the transport's ``send``.

*Lead.* A socket client plays what arrives through its own buffer; TCP delivers in bursts. The
pacer keeps up to ``lead_seconds`` (default 0.1 s) of audio sent beyond what the wall clock has
played, so a late packet does not become a gap. The same lead bounds what a barge-in cannot take
back: ``clear()`` stops the audio within one frame on the gateway's side, and at most the lead is
left in the client's buffer (a GA client drops it on ``input_audio_buffer.speech_started``, and the
Twilio transport sends ``clear``). Past a stall of the event loop, the pacer does not burst the
backlog: it restarts the lead from now.

*Order.* The track reports a reply's end (``playback_finished``) while its last frame is taken;
:class:`SocketAudio` holds such reports until that frame was handed to ``send``, then calls
``before_finished`` (the transport may say "this reply's audio is done": ``response.output_audio.done``,
a Twilio ``mark``) and only then the session's listener, so no audio of a reply follows its end.

*Schedule and replay.* While ``send`` runs, :attr:`SocketAudio.scheduled_end` is when the pacer
expects the client to have played that frame (its model: playing starts on arrival, at 1x, no
network), and :attr:`SocketAudio.frame_samples` its 48 kHz samples. A transport that learns what
the far end really played (Twilio's marks) can take back what it cleared there and
:meth:`~SocketAudio.replay` it: those frames go out, paced, before the track's next one, and the
taps (the echo canceller's reference) hear them again (bounded: at most ``max_replay_frames``; more
is dropped and counted).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from av.audio.frame import AudioFrame

from media import OutboundAudioTrack
from media.outbound import FRAME_SAMPLES, PTIME, RATE, PlaybackListener, PlayoutResult
from media.pacing import FramePacer
from media.pcm import Int16Array, PcmConverter, int16_frame

#: What a socket transport is handed: the reply (tag) the audio belongs to, and the samples at the wire rate.
AudioSink = Callable[[str, Int16Array], None]
#: A frame to send again: its tag, its samples at the wire rate, and at 48 kHz (for the taps).
ReplayFrame = tuple[str, Int16Array, Int16Array]


@dataclass(frozen=True)
class SocketAudioOptions:
    lead_seconds: float = 0.1
    max_buffered_seconds: float = 60.0
    max_replay_frames: int = 256  # 5 s of 20 ms frames: a transport replays at most what it had in flight

    def __post_init__(self) -> None:
        if not 0 <= self.lead_seconds <= 2:
            raise ValueError("lead_seconds must be 0..2")


class SocketAudio:
    """A socket transport's paced output (see the module doc). ``wire_rate``: the rate ``send`` gets."""

    def __init__(self, wire_rate: int, options: SocketAudioOptions | None = None, *,
                 before_finished: Callable[[PlayoutResult], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._options = options or SocketAudioOptions()
        self.track = OutboundAudioTrack(self, max_buffered_seconds=self._options.max_buffered_seconds)
        self._listener: PlaybackListener | None = None
        self._before_finished = before_finished
        self._clock = clock
        self._taking = False
        self._held: list[Callable[[], None]] = []
        self.wire_rate = wire_rate
        self._converter = PcmConverter(wire_rate, sample_format="s16")
        self._pts = 0
        self._replay: deque[ReplayFrame] = deque()
        self._taps: list[Callable[[Int16Array], None]] = []
        self.scheduled_end = 0.0
        self.frame_samples: Int16Array | None = None
        self.frames_sent = 0
        self.frames_replayed = 0
        self.replay_dropped = 0

    def set_wire_rate(self, rate: int) -> None:
        """Send at ``rate`` from the next frame on (the caller changed ``audio.output.format``)."""
        if rate != self.wire_rate:
            self.wire_rate = rate
            self._converter = PcmConverter(rate, sample_format="s16")

    # ------------------------------------------------------------ AudioOutput

    @property
    def buffered_seconds(self) -> float:
        return self.track.buffered_seconds

    def set_listener(self, listener: PlaybackListener) -> None:
        self._listener = listener

    def push(self, tag: str, samples: Int16Array) -> None:
        self.track.push(tag, samples)

    def finish(self, tag: str) -> None:
        self.track.finish(tag)

    def clear(self) -> list[PlayoutResult]:
        self._replay.clear()
        return self.track.clear()

    def clock(self) -> float:
        """The clock :attr:`scheduled_end` is on (monotonic)."""
        return self._clock()

    def replay(self, frames: Iterable[ReplayFrame]) -> None:
        """Send these (tag, wire-rate samples) frames again, in order, before anything else (once resumed)."""
        ahead = list(frames)
        room = self._options.max_replay_frames - len(self._replay)
        if len(ahead) > room:
            self.replay_dropped += len(ahead) - max(0, room)
            ahead = ahead[: max(0, room)]
        self._replay.extendleft(reversed(ahead))

    def replay_pending(self, tag: str) -> int:
        """Wire samples of ``tag`` waiting to be replayed."""
        return sum(len(wire) for queued, wire, _ in self._replay if queued == tag)

    @property
    def paused(self) -> bool:
        return self.track.paused

    def pause(self) -> None:
        """Stop sending from the next frame (what the far end has buffered ahead still plays)."""
        self.track.pause()

    def resume(self) -> None:
        self.track.resume()

    def played_samples(self, tag: str) -> int:
        return self.track.played_samples(tag)

    def add_tap(self, tap: Callable[[Int16Array], None]) -> None:
        self._taps.append(tap)
        self.track.add_tap(tap)

    async def wait_for_space(self, ahead_seconds: float) -> None:
        await self.track.wait_for_space(ahead_seconds)

    def stop(self) -> None:
        self.track.stop()

    # ------------------------------------------- the track's PlaybackListener

    def playback_started(self, tag: str, at: float) -> None:
        if self._listener is not None:
            listener = self._listener
            self._hold(lambda: listener.playback_started(tag, at))

    def playback_finished(self, result: PlayoutResult) -> None:
        self._hold(lambda: self._finished(result))

    def _finished(self, result: PlayoutResult) -> None:
        if self._before_finished is not None:
            self._before_finished(result)
        if self._listener is not None:
            self._listener.playback_finished(result)

    def _hold(self, report: Callable[[], None]) -> None:
        if self._taking:  # told while a frame is taken: after that frame was sent
            self._held.append(report)
        else:  # clear(), or finish() of a tag with nothing queued
            report()

    # ------------------------------------------------------------------ pacing

    async def run(self, send: AudioSink) -> None:
        """Send the output's audio to ``send`` until cancelled (run it in the session's task set)."""
        pacer = FramePacer(RATE, FRAME_SAMPLES)
        played_until = 0.0  # when the client will have played all that was sent (at 1x from now on)
        while self.track.readyState == "live":
            await pacer.next_pts()
            now = self._clock()
            played_until = max(played_until, now)
            while played_until < now + self._options.lead_seconds + PTIME / 2:
                self.scheduled_end = played_until + PTIME
                if not self._send_frame(send):
                    break
                played_until += PTIME

    def _send_frame(self, send: AudioSink) -> bool:
        """Take one frame (a replayed one first) and send it; False when nothing was queued."""
        if self._replay and not self.track.paused:
            again, wire_again, samples_again = self._replay.popleft()
            self.frames_replayed += 1
            for tap in self._taps:
                tap(samples_again)
            self.frame_samples = samples_again
            send(again, wire_again)
            return True
        self._taking = True
        try:
            tag, samples = self.track.next_frame()
        finally:
            self._taking = False
        try:
            if samples is not None and tag is not None:
                wire = self._converter.convert(self._frame(samples))
                if len(wire):
                    self.frames_sent += 1
                    self.frame_samples = samples
                    send(tag, wire)  # type: ignore[arg-type]  # s16 converter: int16 samples
        finally:
            held, self._held = self._held, []
            for report in held:
                report()
        return samples is not None

    def _frame(self, samples: Int16Array) -> AudioFrame:
        frame = int16_frame(samples, RATE, self._pts)
        self._pts += len(samples)
        return frame
