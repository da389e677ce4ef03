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
  then heard it all (``response.done`` follows) — or, should Twilio never echo it, after
  :data:`END_MARK_TIMEOUT_SECONDS`;
* ``clear()`` sends Twilio's ``clear`` at once, ahead of anything still queued (whatever media was
  queued is dropped: it must not play after the clear), and forgets the marks in flight: Twilio
  echoes them on the clear, and those echoes say nothing about what was heard.

Marks waiting for their echo are bounded (``telephony.max_pending_marks``, 256 ≈ 5 s of frames; a
stream that stops echoing loses the oldest, counted in :attr:`TwilioAudio.marks_dropped`), and so
are the messages waiting to be written (:class:`StreamWriter`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.transports.socket_audio import SocketAudio, SocketAudioOptions
from gateway.transports.twilio_messages import clear_message, mark_message, media_message
from gateway.voice.output import OUTPUT_RATE, PlaybackListener, PlayoutResult
from media.g711 import RATE as WIRE_RATE
from media.g711 import G711Encoder
from media.pcm import Int16Array

logger = logging.getLogger(__name__)

#: How long a reply sent to its end waits for its last mark's echo before it is reported anyway.
END_MARK_TIMEOUT_SECONDS = 2.0
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
class _Mark:
    seq: int
    tag: str
    heard_samples: int  # 48 kHz samples of ``tag`` the caller has heard once this mark is echoed


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
        self._marks: deque[_Mark] = deque()
        self._max_marks = max_pending_marks
        self._sent: dict[str, int] = {}  # 48 kHz samples sent per tag not yet reported
        self._heard: dict[str, int] = {}  # ... and heard (echoed marks)
        self._held: dict[str, tuple[PlayoutResult, int, asyncio.TimerHandle]] = {}  # sent to its end: its last mark
        self.marks_dropped = 0
        self.marks_echoed = 0
        self.clears_sent = 0

    @property
    def frames_sent(self) -> int:
        """Media frames handed to the writer so far (each followed by its mark)."""
        return self._seq

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
        """Stop sending from the next frame (what the far end has buffered ahead still plays)."""
        self._socket.pause()

    def resume(self) -> None:
        self._socket.resume()

    def played_samples(self, tag: str) -> int:
        return self._socket.played_samples(tag)

    def add_tap(self, tap: Callable[[Int16Array], None]) -> None:
        self._socket.add_tap(tap)

    async def wait_for_space(self, ahead_seconds: float) -> None:
        await self._socket.wait_for_space(ahead_seconds)

    def clear(self) -> list[PlayoutResult]:
        """Stop now: Twilio's ``clear`` goes out first; each unreported reply is reported with what was heard."""
        self._writer.put_first(clear_message(self._sid))
        self.clears_sent += 1
        self._marks.clear()  # their echoes come back with the clear: they say nothing about what was heard
        held = [self._interrupted(result) for result, _, _ in self._held.values()]
        for _, _, timer in self._held.values():
            timer.cancel()
        self._held.clear()
        results = [*held, *(self._adjusted(r) for r in self._socket.clear())]
        if self._listener is not None:
            for result in held:
                self._listener.playback_finished(result)
        return results

    def stop(self) -> None:
        for _, _, timer in self._held.values():
            timer.cancel()
        self._socket.stop()

    async def run(self) -> None:
        """Pace the replies out until cancelled (the transport runs it in the session's task set)."""
        await self._socket.run(self._send_frame)

    # ------------------------------------------------------- the Twilio side

    def mark_played(self, name: str) -> None:
        """Twilio echoed the mark ``name``: the audio before it has been heard."""
        if not name.isdigit() or len(name) > 12:
            return  # not one of ours
        seq = int(name)
        while self._marks and self._marks[0].seq <= seq:
            mark = self._marks.popleft()
            self.marks_echoed += 1
            if mark.tag in self._sent:
                self._heard[mark.tag] = max(self._heard.get(mark.tag, 0), mark.heard_samples)
        for tag in [tag for tag, (_, last_seq, _) in self._held.items() if last_seq <= seq]:
            self._release(tag)

    def _send_frame(self, tag: str, wire: Int16Array) -> None:
        """One frame of ``tag`` at 8 kHz: its ``media`` message, then its ``mark``."""
        self._writer.put(media_message(self._sid, self._encoder.encode_8k(wire)))
        sent = self._sent.get(tag, 0) + len(wire) * (OUTPUT_RATE // WIRE_RATE)
        self._sent[tag] = sent
        self._seq += 1
        if len(self._marks) >= self._max_marks:
            self._marks.popleft()
            self.marks_dropped += 1
        self._marks.append(_Mark(self._seq, tag, sent))
        self._writer.put(mark_message(self._sid, str(self._seq)))

    # --------------------------------------- the paced track's PlaybackListener

    def playback_started(self, tag: str, at: float) -> None:
        if self._listener is not None:
            self._listener.playback_started(tag, at)

    def playback_finished(self, result: PlayoutResult) -> None:
        if result.interrupted:
            return  # cut by clear(): reported there, with what was heard
        last = max((m.seq for m in self._marks if m.tag == result.tag), default=None)
        if last is None:  # nothing of it is in flight (no audio, or all of it heard already)
            self._report(result)
            return
        timer = asyncio.get_running_loop().call_later(END_MARK_TIMEOUT_SECONDS, self._release, result.tag, True)
        self._held[result.tag] = (result, last, timer)

    def _release(self, tag: str, timed_out: bool = False) -> None:
        held = self._held.pop(tag, None)
        if held is None:
            return
        result, _, timer = held
        timer.cancel()
        if timed_out:
            logger.warning("stream %s: no echo of reply %s's last mark within %.0f s; reporting it as played",
                           self._sid, tag, END_MARK_TIMEOUT_SECONDS)
        self._report(result)

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
