"""The gateway's voice on a Twilio media stream: μ-law ``media`` paced out, ``mark``s back, ``clear`` on barge-in.

Twilio plays what it is sent through its own buffer and says nothing about it — except that a
``mark`` sent after some audio is echoed back once that audio has been played to the caller, and
that ``clear`` empties the buffer at once (and echoes every mark still in it). So:

* each 20 ms frame of a reply goes out as one ``media`` message (160 bytes of μ-law, base64), paced
  by :class:`~gateway.transports.socket_audio.SocketAudio` at most ``lead_seconds`` (0.1 s) ahead
  of the wall clock, and is followed by a ``mark`` naming its sequence number;
* an echoed mark says how much of its reply the caller has **heard** (not just been sent): a reply
  cut by a barge-in (``clear()``) is reported with that position, so the truncation
  (``conversation.item.truncated``, the assistant's history) keeps only what the caller heard, to
  within a frame plus Twilio's one-way delay;
* a reply that was sent to its end is reported only once its last mark comes back — the caller has
  then heard it all (``response.done``) — or, should Twilio never echo it, after
  :data:`END_MARK_TIMEOUT_SECONDS`;
* ``pause()`` (speech over a reply: a false interruption may follow) sends ``clear`` at once, so the
  caller stops hearing the reply within a frame plus the network — not when the interruption is
  confirmed (about a second later: 1064 ms p50 before this, docs/benchmarks.md). Its ``clear-N``
  sentinel mark says where the clear cut the playout (:mod:`gateway.transports.twilio_playout`);
  ``resume()`` then sends the cleared frames again from that sample, and ``clear()`` (the
  interruption was real) reports the reply with what was heard before the pause's clear;
* ``clear()`` without a pause sends Twilio's ``clear`` at once, ahead of anything still queued
  (whatever media was queued is dropped: it must not play after the clear), and forgets the marks in
  flight: Twilio echoes them on the clear, and those echoes say nothing about what was heard.

Marks waiting for their echo are bounded (``telephony.max_pending_marks``, 256 ≈ 5 s of frames; a
stream that stops echoing loses the oldest, counted in :attr:`TwilioAudio.marks_dropped`), and so
are the frames kept to be sent again (the same marks) and the messages waiting to be written
(:class:`StreamWriter`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.transports.socket_audio import SocketAudio, SocketAudioOptions
from gateway.transports.twilio_messages import clear_message, mark_message, media_message
from gateway.transports.twilio_playout import MarksInFlight, PlayoutClock, SentFrame
from gateway.voice.output import OUTPUT_RATE, PlaybackListener, PlayoutResult
from media.g711 import RATE as WIRE_RATE
from media.g711 import G711Encoder
from media.pcm import Int16Array

logger = logging.getLogger(__name__)

#: How long a reply sent to its end waits for its last mark's echo before it is reported anyway.
END_MARK_TIMEOUT_SECONDS = 2.0
#: How long a pause waits for the echo of its ``clear-N`` mark before the pacer's model decides what was heard.
SENTINEL_TIMEOUT_SECONDS = 0.5
#: Messages waiting to be written: 2 s of media and marks at 50 a second each.
MAX_QUEUED_MESSAGES = 200


class StreamWriter:
    """The messages going to Twilio, written in order by :meth:`run`; bounded, media clearable."""

    def __init__(self, send: Callable[[str], Awaitable[None]], *, max_messages: int = MAX_QUEUED_MESSAGES) -> None:
        self._send = send
        self._queue: deque[tuple[bool, str]] = deque()  # (droppable by clear, text)
        self._max = max_messages
        self._ready = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self.messages_sent = 0
        self.messages_dropped = 0

    def put(self, text: str, *, media: bool = True) -> None:
        if len(self._queue) >= self._max:
            self.messages_dropped += 1
            return
        self._queue.append((media, text))
        self._empty.clear()
        self._ready.set()

    def put_first(self, text: str) -> None:
        """``text`` ahead of everything queued, which is dropped if it is media (``clear``)."""
        kept = [(media, queued) for media, queued in self._queue if not media]
        self.messages_dropped += len(self._queue) - len(kept)
        self._queue = deque([(False, text), *kept])
        self._empty.clear()
        self._ready.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        while True:
            while not self._queue:
                self._empty.set()
                self._ready.clear()
                await self._ready.wait()
            _, text = self._queue.popleft()
            await self._send(text)
            self.messages_sent += 1

    async def drain(self) -> None:
        """Wait until everything queued so far was written (the caller bounds the wait)."""
        await self._empty.wait()


@dataclass
class _Held:
    """A reply sent to its end, waiting for the echo of its last frame's mark."""

    result: PlayoutResult
    last_seq: int
    timer: asyncio.TimerHandle | None = None

    def start_timer(self, release: Callable[[str, bool], None]) -> None:
        self.stop_timer()
        self.timer = asyncio.get_running_loop().call_later(END_MARK_TIMEOUT_SECONDS, release, self.result.tag, True)

    def stop_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


@dataclass
class _Pause:
    """A pause's ``clear``, until its sentinel mark comes back and says where it cut the playout."""

    sentinel: str
    cleared_at: float
    in_flight: list[SentFrame]
    timer: asyncio.TimerHandle
    resume: bool = False  # resume() came before the cut was known


#: A held reply whose cleared tail waits to be sent again: its last mark is not known yet.
_NOT_SENT_YET = 2**62


class TwilioAudio:
    """The :class:`~gateway.voice.output.AudioOutput` of a Twilio call (see the module doc)."""

    def __init__(self, writer: StreamWriter, stream_sid: str, *, max_pending_marks: int = 256,
                 options: SocketAudioOptions | None = None) -> None:
        self._writer = writer
        self._sid = stream_sid
        self._socket = SocketAudio(WIRE_RATE, options)
        self._socket.set_listener(self)
        self._encoder = G711Encoder("pcmu", rate=WIRE_RATE)
        self._listener: PlaybackListener | None = None
        self._seq = 0
        self._marks = MarksInFlight(max_pending_marks)
        self._playout = PlayoutClock()
        self._sent: dict[str, int] = {}  # 48 kHz samples sent per tag not yet reported (less what a clear took back)
        self._heard: dict[str, int] = {}  # ... and heard (echoed marks)
        self._held: dict[str, _Held] = {}
        self._pause: _Pause | None = None
        self._pauses = 0
        self.marks_echoed = 0
        self.clears_sent = 0
        self.frames_resent = 0  # frames a pause's clear dropped unheard, sent again on resume

    @property
    def frames_sent(self) -> int:
        """Media frames handed to the writer so far (each followed by its mark; resent ones included)."""
        return self._seq

    @property
    def marks_dropped(self) -> int:
        return self._marks.dropped

    # ------------------------------------------------------------ AudioOutput

    @property
    def buffered_seconds(self) -> float:
        return self._socket.buffered_seconds

    def set_listener(self, listener: PlaybackListener) -> None:
        self._listener = listener

    def push(self, tag: str, samples: Int16Array) -> None:
        self._socket.push(tag, samples)

    def finish(self, tag: str) -> None:
        self._socket.finish(tag)

    @property
    def paused(self) -> bool:
        return self._socket.paused

    def pause(self) -> None:
        """Stop sending from the next frame and ``clear`` Twilio's buffer now: the caller stops hearing the reply."""
        if self._pause is not None:  # resumed before the last clear's cut was known: that resume is off
            self._pause.resume = False
            return
        if self._socket.paused:
            return
        self._socket.pause()
        in_flight = self._marks.take_all()
        if not in_flight:
            return  # Twilio has played all it was sent: nothing to clear
        self._send_clear()
        self._pauses += 1
        sentinel = f"clear-{self._pauses}"
        self._writer.put(mark_message(self._sid, sentinel), media=False)
        for held in self._held.values():
            held.stop_timer()
        timer = asyncio.get_running_loop().call_later(SENTINEL_TIMEOUT_SECONDS, self._cut, None)
        self._pause = _Pause(sentinel, self._socket.clock(), in_flight, timer)

    def resume(self) -> None:
        """Go on from the sample the caller heard last: what the pause's clear dropped goes out again first."""
        if self._pause is not None:
            self._pause.resume = True  # once the sentinel says where the clear cut
            return
        self._socket.resume()

    def played_samples(self, tag: str) -> int:
        """Samples of ``tag`` sent and not taken back by a pause's clear (what a resume goes on from)."""
        return self._sent.get(tag, 0)

    def add_tap(self, tap: Callable[[Int16Array], None]) -> None:
        self._socket.add_tap(tap)

    async def wait_for_space(self, ahead_seconds: float) -> None:
        await self._socket.wait_for_space(ahead_seconds)

    def clear(self) -> list[PlayoutResult]:
        """Stop now: Twilio's ``clear`` goes out first; each unreported reply is reported with what was heard."""
        if self._pause is not None:
            self._cut(self._socket.clock())  # cut by now, at the latest
        if len(self._marks):  # a pause's clear left nothing at Twilio: no second one
            self._send_clear()
        self._marks.clear()  # their echoes come back with the clear: they say nothing about what was heard
        held = [self._interrupted(h.result) for h in self._held.values()]
        for h in self._held.values():
            h.stop_timer()
        self._held.clear()
        results = [*held, *(self._adjusted(r) for r in self._socket.clear())]
        if self._listener is not None:
            for result in held:
                self._listener.playback_finished(result)
        return results

    def stop(self) -> None:
        for held in self._held.values():
            held.stop_timer()
        if self._pause is not None:
            self._pause.timer.cancel()
        self._socket.stop()

    async def run(self) -> None:
        """Pace the replies out until cancelled (the transport runs it in the session's task set)."""
        await self._socket.run(self._send_frame)

    # ------------------------------------------------------- the Twilio side

    def mark_played(self, name: str) -> None:
        """Twilio echoed the mark ``name``: the audio before it has been heard (or cleared, after a pause)."""
        at = self._socket.clock()
        if self._pause is not None:
            if name == self._pause.sentinel:
                self._cut(at)
            return  # played or flushed by the pause's clear: the sentinel's echo says which
        if not name.isdigit() or len(name) > 12:
            return  # not one of ours
        seq = int(name)
        played = self._marks.echoed_through(seq)
        for frame in played:
            self.marks_echoed += 1
            if frame.tag in self._sent:
                self._heard[frame.tag] = max(self._heard.get(frame.tag, 0), frame.heard_samples)
        if played:
            self._playout.echoed(played[-1], at)
        self._release_through(seq)

    def _send_clear(self) -> None:
        self._writer.put_first(clear_message(self._sid))
        self.clears_sent += 1

    def _cut(self, echoed_at: float | None) -> None:
        """The pause's clear reached Twilio: what it dropped unheard is sent again on resume."""
        pause, self._pause = self._pause, None
        if pause is None:
            return
        pause.timer.cancel()
        if echoed_at is None:
            logger.warning("stream %s: no echo of mark %s within %.1f s; the pacer's clock says what was heard",
                           self._sid, pause.sentinel, SENTINEL_TIMEOUT_SECONDS)
        heard, dropped = MarksInFlight.split(pause.in_flight, self._playout.cut_at(echoed_at, pause.cleared_at))
        for frame in heard:
            if frame.tag in self._sent:
                self._heard[frame.tag] = max(self._heard.get(frame.tag, 0), frame.heard_samples)
        resend = [frame for frame in dropped if frame.tag in self._sent]
        for frame in reversed(resend):  # each tag goes on from its first frame dropped
            self._sent[frame.tag] = frame.heard_samples - len(frame.wire) * (OUTPUT_RATE // WIRE_RATE)
        self._socket.replay((frame.tag, frame.wire, frame.samples) for frame in resend)
        self.frames_resent += len(resend)
        for held in self._held.values():
            if any(frame.tag == held.result.tag for frame in resend):
                held.last_seq = _NOT_SENT_YET
        self._release_through(dropped[0].seq - 1 if dropped else pause.in_flight[-1].seq)
        if pause.resume:
            self._socket.resume()

    def _send_frame(self, tag: str, wire: Int16Array) -> None:
        """One frame of ``tag`` at 8 kHz: its ``media`` message, then its ``mark``."""
        self._writer.put(media_message(self._sid, self._encoder.encode_8k(wire)))
        sent = self._sent.get(tag, 0) + len(wire) * (OUTPUT_RATE // WIRE_RATE)
        self._sent[tag] = sent
        self._seq += 1
        frame = self._socket.frame_samples
        self._marks.append(SentFrame(self._seq, tag, sent, wire, wire if frame is None else frame,
                                     self._socket.scheduled_end))
        self._writer.put(mark_message(self._sid, str(self._seq)))
        held = self._held.get(tag)
        if held is not None:  # the cleared tail of a reply sent to its end, sent again: it ends at this mark now
            held.last_seq = self._seq
            held.start_timer(self._release)

    # --------------------------------------- the paced track's PlaybackListener

    def playback_started(self, tag: str, at: float) -> None:
        if self._listener is not None:
            self._listener.playback_started(tag, at)

    def playback_finished(self, result: PlayoutResult) -> None:
        if result.interrupted:
            return  # cut by clear(): reported there, with what was heard
        tag = result.tag
        in_pause = [f.seq for f in self._pause.in_flight if f.tag == tag] if self._pause is not None else []
        last = max([*in_pause, self._marks.last_seq(tag) or 0]) or None
        if self._socket.replay_pending(tag):
            last = _NOT_SENT_YET
        if last is None:  # nothing of it is in flight (no audio, or all of it heard already)
            self._report(result)
            return
        held = _Held(result, last)
        if self._pause is None and last != _NOT_SENT_YET:
            held.start_timer(self._release)
        self._held[tag] = held

    def _release_through(self, seq: int) -> None:
        for tag in [tag for tag, held in self._held.items() if held.last_seq <= seq]:
            self._release(tag)

    def _release(self, tag: str, timed_out: bool = False) -> None:
        held = self._held.pop(tag, None)
        if held is None:
            return
        held.stop_timer()
        if timed_out:
            logger.warning("stream %s: no echo of reply %s's last mark within %.0f s; reporting it as played",
                           self._sid, tag, END_MARK_TIMEOUT_SECONDS)
        self._report(held.result)

    def _report(self, result: PlayoutResult) -> None:
        self._forget(result.tag)
        if self._listener is not None:
            self._listener.playback_finished(result)

    def _interrupted(self, result: PlayoutResult) -> PlayoutResult:
        heard = min(self._heard.get(result.tag, 0), result.played_samples)
        self._forget(result.tag)
        return PlayoutResult(result.tag, heard, result.underrun_samples, interrupted=True)

    def _adjusted(self, result: PlayoutResult) -> PlayoutResult:
        adjusted = self._interrupted(result)
        if self._listener is not None:
            self._listener.playback_finished(adjusted)
        return adjusted

    def _forget(self, tag: str) -> None:
        self._sent.pop(tag, None)
        self._heard.pop(tag, None)
