"""The reply being spoken: its events, playback, barge-in truncation and end.

One reply is active at a time. The outbound track tells this module when a
reply's first packet left and when its audio has all been sent; an
interruption (barge-in, ``response.cancel``) clears the track first, so audio
stops within one frame, then truncates the assistant item to the samples that
were actually sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from gateway.protocol import server_events as events
from gateway.protocol.server_events import Event
from gateway.voice.history import History
from gateway.ops.observers import CallObserver, TurnReport
from gateway.voice.reply import Reply
from media import OutboundAudioTrack
from media.outbound import RATE as TRACK_RATE

logger = logging.getLogger(__name__)


@dataclass
class TurnTiming:
    """Monotonic times of one turn's stages, for the latency breakdown."""

    speech_end: float
    turn_confirmed: float
    asr_final: float
    speculative: bool
    asr_compute_s: float
    audio_s: float
    item_id: str
    transcript: str


@dataclass
class _Active:
    reply: Reply
    timing: TurnTiming | None
    started: bool = False
    reported: bool = False  # the turn was told to the observer
    spoken: bool = False  # a transcript delta was sent


def stages_ms(timing: TurnTiming, reply: Reply | None, first_packet_at: float | None) -> dict[str, float | None]:
    """Each stage in milliseconds after the end of speech."""

    def ms(at: float | None) -> float | None:
        return None if at is None else round((at - timing.speech_end) * 1000, 1)

    return {
        "speech_end": 0.0,
        "turn_confirmed": ms(timing.turn_confirmed),
        "asr_final": ms(timing.asr_final),
        "agent_first_text": ms(reply.agent_first_text_at if reply is not None else None),
        "tts_first_audio": ms(reply.tts_first_audio_at if reply is not None else None),
        "first_packet_sent": ms(first_packet_at),
    }


class ResponsePlayer:
    def __init__(self, *, call_id: str, track: OutboundAudioTrack, send: Callable[[Event], None],
                 observer: CallObserver, history: History) -> None:
        self.call_id = call_id
        self._track = track
        self._send = send
        self._observer = observer
        self._history = history
        self._active: _Active | None = None
        track.set_listener(self)

    @property
    def active_response_id(self) -> str | None:
        """The response being spoken (or about to be), if any."""
        return self._active.reply.response_id if self._active is not None else None

    def activate(self, reply: Reply, timing: TurnTiming | None) -> None:
        """Announce ``reply`` and let its audio flow to the track."""
        self._active = _Active(reply, timing)
        item = events.message_item(reply.item_id, "assistant", None, status="in_progress", audio=True)
        self._send(events.response_created(reply.response_id))
        self._send(events.output_item_added(reply.response_id, item))
        self._send(events.item_added(item, self._history.last_id))
        self._send(events.content_part_added(reply.response_id, reply.item_id))
        reply.release()
        reply.task.add_done_callback(lambda _t: self._track.finish(reply.response_id))

    def on_clause(self, response_id: str, item_id: str, text: str) -> None:
        active = self._active
        if active is not None and active.reply.response_id == response_id:
            prefix = " " if active.spoken else ""
            active.spoken = True
            self._send(events.audio_transcript_delta(response_id, item_id, prefix + text))

    # The outbound track's listener ---------------------------------------------------------

    def playback_started(self, tag: str, at: float) -> None:
        active = self._active
        if active is None or active.reply.response_id != tag or active.started:
            return
        active.started = True
        self._send(events.output_audio_started(tag))
        if active.timing is not None:
            self._send_metrics(active, at)

    def playback_finished(self, tag: str, played_samples: int) -> None:
        active = self._active
        underrun = self._track.underrun_samples(tag)
        self._track.forget(tag)
        if active is None or active.reply.response_id != tag:
            return
        self._active = None
        if active.started:
            self._send(events.output_audio_stopped(tag))
        status = "failed" if active.reply.failed else "completed"
        self._played(tag, played_samples, underrun)
        self._finish(active, active.reply.text, truncated=False, status=status)

    # Ending early ---------------------------------------------------------------------------

    def interrupt(self, reason: str) -> bool:
        """Stop the active reply now and truncate it to what was played; False if none is active."""
        active, self._active = self._active, None
        if active is None:
            return False
        reply = active.reply
        reply.task.cancel()
        self._track.clear()
        spawn(reply.cancel())
        played = self._track.played_samples(reply.response_id)
        self._played(reply.response_id, played, self._track.underrun_samples(reply.response_id))
        self._track.forget(reply.response_id)
        if active.started:
            self._send(events.output_audio_cleared(reply.response_id))
        played_ms = played * 1000 // TRACK_RATE
        self._send(events.item_truncated(reply.item_id, played_ms))
        logger.info("call %s: reply %s interrupted (%s) after %d ms", self.call_id, reply.response_id, reason,
                    played_ms)
        self._finish(active, reply.heard_text(played), truncated=True, status="cancelled", reason=reason)
        return True

    async def close(self) -> None:
        active, self._active = self._active, None
        if active is not None:
            self._report(active, None)  # hung up before the reply's first packet, if it had not started
            active.reply.task.cancel()
            await active.reply.cancel()
        self._track.clear()

    def report_turn(self, timing: TurnTiming, reply: Reply | None, first_packet_at: float | None) -> None:
        """Tell the observer about a committed turn, with what is known of its reply."""
        overhead = None if first_packet_at is None else round((first_packet_at - timing.turn_confirmed) * 1000, 1)
        latency = stages_ms(timing, reply, first_packet_at)
        latency.pop("speech_end")
        self._observer.turn_completed(self.call_id, TurnReport(
            item_id=timing.item_id,
            response_id=reply.response_id if reply is not None else None,
            speculative=timing.speculative,
            latency_ms=latency,
            overhead_ms=overhead,
            asr_compute_ms=round(timing.asr_compute_s * 1000, 1),
            audio_ms=round(timing.audio_s * 1000),
            transcript=timing.transcript,
        ))

    def _report(self, active: _Active, first_packet_at: float | None) -> None:
        if active.timing is not None and not active.reported:
            active.reported = True
            self.report_turn(active.timing, active.reply, first_packet_at)

    def _finish(self, active: _Active, text: str, *, truncated: bool, status: str, reason: str | None = None) -> None:
        reply = active.reply
        self._report(active, None)  # ended before its first packet
        self._history.record_assistant(reply.item_id, text, truncated)
        item = events.message_item(reply.item_id, "assistant", text,
                                   status="completed" if status == "completed" else "incomplete", audio=True)
        self._send(events.audio_transcript_done(reply.response_id, reply.item_id, text))
        self._send(events.content_part_done(reply.response_id, reply.item_id, text))
        self._send(events.output_item_done(reply.response_id, item))
        self._send(events.item_done(item, self._history.previous_of(reply.item_id)))
        self._send(events.response_done(reply.response_id, status, [item], reason))

    def _played(self, response_id: str, played_samples: int, underrun_samples: int) -> None:
        """How much of a reply was played, and how much silence its audio running out left in it."""
        if not played_samples:
            return
        self._observer.reply_played(self.call_id, played_samples / TRACK_RATE, underrun_samples / TRACK_RATE)
        self._send(events.response_playback(response_id, played_samples * 1000 // TRACK_RATE,
                                            underrun_samples * 1000 // TRACK_RATE))

    def _send_metrics(self, active: _Active, first_packet_at: float) -> None:
        timing, reply = active.timing, active.reply
        assert timing is not None
        self._send(events.turn_metrics(
            timing.item_id, reply.response_id, stages_ms(timing, reply, first_packet_at),
            speculative=timing.speculative,
            confirmed_to_first_packet_ms=round((first_packet_at - timing.turn_confirmed) * 1000, 1),
            asr_compute_ms=round(timing.asr_compute_s * 1000, 1),
            audio_ms=round(timing.audio_s * 1000),
        ))
        self._report(active, first_packet_at)


_background: set[asyncio.Task[None]] = set()


def spawn(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run a short clean-up coroutine to completion without blocking the caller."""
    task = asyncio.ensure_future(coroutine)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def drain_background() -> None:
    """Wait for pending clean-ups (used at shutdown and in tests)."""
    while _background:
        with contextlib.suppress(Exception):
            await asyncio.gather(*list(_background), return_exceptions=True)
