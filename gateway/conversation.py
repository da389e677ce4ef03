"""One call's conversation: turn-taking, replies, barge-in and truncation.

Everything that decides *when* the gateway listens, answers or stops talking
lives here. The caller's audio comes in through :meth:`Conversation.feed`; VAD
probabilities drive a :class:`TurnDetector`; the turn's final transcript is
decoded speculatively as soon as the caller falls silent, and with a
speculative agent the reply is synthesised (held back) inside the silence
window, so that it starts the moment the turn is confirmed.

* Barge-in: speech while a reply is active clears the outbound track (audio
  stops within one frame), cancels the agent and synthesis, and truncates the
  assistant item to what was actually played.
* A pause is not a turn: speech that resumes before the reply is committed
  cancels the pending reply and the same utterance goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from engines import EngineError, Transcript
from engines.base import SAMPLE_RATE, FloatArray
from gateway import events
from gateway.agents import Agent, ConversationItem, TextAgent
from gateway.audio_buffer import RollingAudio
from gateway.engines import Engines
from gateway.events import Event
from gateway.observers import NULL_OBSERVER, CallObserver, TurnReport
from gateway.reply import Reply
from gateway.settings import SessionSettings
from gateway.transcription import PartialTranscriber
from gateway.turns import SpeechPaused, SpeechResumed, SpeechStarted, TurnDetector, TurnEnded, TurnEvent
from media import OutboundAudioTrack
from media.outbound import RATE as TRACK_RATE

logger = logging.getLogger(__name__)

MIN_TRANSCRIBED_SPEECH_MS = 96


@dataclass
class _Prepared:
    transcript: Transcript
    asr_done_at: float
    reply: Reply | None


@dataclass
class _Utterance:
    item_id: str
    start_sample: int
    partials: PartialTranscriber
    speculation: asyncio.Task[_Prepared] | None = None
    finishing: asyncio.Task[None] | None = None
    end_ms: int = 0
    speech_end_at: float = 0.0


@dataclass
class _Timing:
    """Monotonic times of one turn's stages."""

    speech_end: float
    turn_confirmed: float
    asr_final: float
    speculative: bool
    asr_compute_s: float
    audio_s: float
    item_id: str = ""
    transcript: str = ""


@dataclass
class _Active:
    reply: Reply
    timing: _Timing | None
    started: bool = False
    reported: bool = False  # the turn was told to the observer
    extra: dict[str, object] = field(default_factory=dict)


class Conversation:
    def __init__(
        self,
        *,
        call_id: str,
        engines: Engines,
        track: OutboundAudioTrack,
        send: Callable[[Event], None],
        settings: SessionSettings,
        max_utterance_seconds: float,
        tts_ahead_seconds: float,
        partial_interval_ms: int,
        observer: CallObserver = NULL_OBSERVER,
        speculative: bool = True,
        incremental_tts: bool = True,
    ) -> None:
        self.call_id = call_id
        self._engines = engines
        self._track = track
        self._send = send
        self._observer = observer
        self.settings = settings
        self._vad = engines.vad.stream()
        self._detector = TurnDetector(
            threshold=settings.turn.threshold, silence_duration_ms=settings.turn.silence_duration_ms
        )
        self._max_utterance = int(max_utterance_seconds * SAMPLE_RATE)
        self._audio = RollingAudio(self._max_utterance + 4 * SAMPLE_RATE)
        self._window = np.zeros(0, np.float32)
        self._ahead = tts_ahead_seconds
        self._partial_interval = partial_interval_ms * SAMPLE_RATE // 1000
        self._speculative = speculative
        self._incremental_tts = incremental_tts
        self._utterance: _Utterance | None = None
        self._active: _Active | None = None
        self._history: list[ConversationItem] = []
        self._pending_client_text: ConversationItem | None = None
        self._feed_at = 0.0
        self._closed = False
        self.turns = 0
        self.barge_ins = 0
        track.set_listener(self)

    # ------------------------------------------------------------------ input

    async def feed(self, pcm: FloatArray) -> None:
        """The caller's next 16 kHz samples, in order."""
        if self._closed:
            return
        self._feed_at = time.monotonic()
        self._audio.append(pcm)
        self._window = np.concatenate([self._window, pcm]) if len(self._window) else pcm
        size = self._vad.window_samples
        count = len(self._window) // size
        if count:
            first_sample = self._audio.end - len(self._window)
            windows = self._window[: count * size].reshape(count, size)
            self._window = self._window[count * size :].copy()
            probabilities = await self._vad.probabilities(windows)
            for i, probability in enumerate(probabilities):
                start = first_sample + i * size
                turn_events = self._detector.update(probability, start * 1000 // SAMPLE_RATE,
                                                    (start + size) * 1000 // SAMPLE_RATE)
                for event in turn_events:
                    self._on_turn_event(event)
        utterance = self._utterance
        if utterance is not None and self._detector.speaking and utterance.finishing is None:
            if self._audio.end - utterance.start_sample >= self._max_utterance:
                self._detector.reset()
                self._end_turn(self._audio.end * 1000 // SAMPLE_RATE)
            else:
                utterance.partials.maybe_decode(
                    lambda: self._audio.slice(utterance.start_sample, self._audio.end), self._audio.end
                )

    def _on_turn_event(self, event: TurnEvent) -> None:
        if isinstance(event, SpeechStarted):
            self._speech_started(event.audio_start_ms)
        elif isinstance(event, SpeechPaused):
            self._start_speculation(event.audio_end_ms)
        elif isinstance(event, SpeechResumed):
            if self._utterance is not None:
                self._drop_speculation(self._utterance)
        elif isinstance(event, TurnEnded):
            self._end_turn(event.audio_end_ms)

    def _speech_started(self, audio_start_ms: int) -> None:
        utterance = self._utterance
        if utterance is not None:
            # A pause is not a turn: the reply was not committed yet, so drop it and go on.
            if utterance.finishing is not None:
                utterance.finishing.cancel()
                utterance.finishing = None
            self._drop_speculation(utterance)
        else:
            padding = self.settings.turn.prefix_padding_ms
            item_id = events.new_id("item")
            utterance = _Utterance(
                item_id=item_id,
                start_sample=max(0, (audio_start_ms - padding) * SAMPLE_RATE // 1000),
                partials=PartialTranscriber(
                    self._engines.asr,
                    lambda delta: self._send(events.transcription_delta(item_id, delta)),
                    interval_samples=self._partial_interval,
                ),
            )
            self._utterance = utterance
        self._send(events.speech_started(utterance.item_id, audio_start_ms))
        if self._active is not None and self.settings.turn.interrupt_response:
            self.barge_ins += 1
            self._interrupt("turn_detected")
            now_ms = self._audio.end * 1000 // SAMPLE_RATE
            onset_at = self._feed_at - max(0, now_ms - audio_start_ms) / 1000
            self._observer.barge_in(self.call_id, time.monotonic() - onset_at)

    def _start_speculation(self, audio_end_ms: int) -> None:
        utterance = self._utterance
        if utterance is None or utterance.finishing is not None or not self._speculative:
            return
        self._drop_speculation(utterance)
        end_sample = self._audio.end
        utterance.speculation = asyncio.create_task(self._prepare(utterance, end_sample, speculative=True))

    def _drop_speculation(self, utterance: _Utterance) -> None:
        task, utterance.speculation = utterance.speculation, None
        if task is None:
            return
        if task.done():
            if not task.cancelled() and task.exception() is None and task.result().reply is not None:
                reply = task.result().reply
                assert reply is not None
                _spawn(reply.cancel())
        else:
            task.cancel()

    def _end_turn(self, audio_end_ms: int) -> None:
        utterance = self._utterance
        if utterance is None:
            return
        utterance.partials.cancel()
        utterance.end_ms = audio_end_ms
        now_ms = self._audio.end * 1000 // SAMPLE_RATE
        utterance.speech_end_at = self._feed_at - max(0, now_ms - audio_end_ms) / 1000
        self._send(events.speech_stopped(utterance.item_id, audio_end_ms))
        utterance.finishing = asyncio.create_task(self._finish_turn(utterance, time.monotonic()))

    # ------------------------------------------------------------------ turns

    async def _prepare(self, utterance: _Utterance, end_sample: int, *, speculative: bool) -> _Prepared:
        samples = self._audio.slice(utterance.start_sample, end_sample)
        transcript = await self._engines.asr.transcribe(samples)
        done_at = time.monotonic()
        self._observer.asr_finished(transcript.audio_seconds, transcript.compute_seconds)
        reply = None
        text = transcript.text.strip()
        if text and self.settings.turn.create_response:
            agent = self._engines.agents.create(self.settings.agent, call_id=self.call_id)
            if agent.speculative or not speculative:
                history = [*self._history, ConversationItem(utterance.item_id, "user", text)]
                reply = self._new_reply(agent, history)
                reply.start()
        return _Prepared(transcript, done_at, reply)

    async def _finish_turn(self, utterance: _Utterance, confirmed_at: float) -> None:
        speculation, utterance.speculation = utterance.speculation, None
        speculative = speculation is not None
        try:
            prepared = await (speculation or self._prepare(utterance, self._audio.end, speculative=False))
        except EngineError as exc:
            self._utterance = None
            self._send(events.transcription_failed(utterance.item_id, str(exc)))
            self._send(events.error("asr_failed", str(exc), error_type="server_error"))
            logger.warning("call %s: transcription failed: %s", self.call_id, exc)
            return
        text = prepared.transcript.text.strip()
        reply = prepared.reply
        if text and reply is None and self.settings.turn.create_response:
            agent = self._engines.agents.create(self.settings.agent, call_id=self.call_id)
            reply = self._new_reply(agent, [*self._history, ConversationItem(utterance.item_id, "user", text)])
            reply.start()
        if reply is not None:
            try:
                await reply.first_audio.wait()
            except asyncio.CancelledError:
                await reply.cancel()
                raise
        # Commit point: from here on the turn is final and nothing awaits.
        self._utterance = None
        if not text:
            logger.info("call %s: utterance %s had no words; discarded", self.call_id, utterance.item_id)
            return
        self.turns += 1
        previous = self._history[-1].id if self._history else None
        self._send(events.input_committed(utterance.item_id, previous))
        item = events.message_item(utterance.item_id, "user", text, status="completed", audio=True)
        self._send(events.item_added(item, previous))
        self._send(events.item_done(item, previous))
        self._send(events.transcription_completed(utterance.item_id, text))
        self._history.append(ConversationItem(utterance.item_id, "user", text))
        logger.info("call %s: turn %s committed (%.1f s of audio, asr %.0f ms)", self.call_id, utterance.item_id,
                    prepared.transcript.audio_seconds, prepared.transcript.compute_seconds * 1000)
        timing = _Timing(
            speech_end=utterance.speech_end_at,
            turn_confirmed=confirmed_at,
            asr_final=prepared.asr_done_at,
            speculative=speculative,
            asr_compute_s=prepared.transcript.compute_seconds,
            audio_s=prepared.transcript.audio_seconds,
            item_id=utterance.item_id,
            transcript=text,
        )
        if reply is None:
            self._report_turn(timing, None, None)
            return
        self._activate(reply, timing)

    # ---------------------------------------------------------------- replies

    def _new_reply(self, agent: Agent, history: list[ConversationItem], item_id: str | None = None) -> Reply:
        response_id = events.new_id("resp")
        item_id = item_id or events.new_id("item")
        return Reply(
            response_id=response_id,
            item_id=item_id,
            pieces=agent.reply(history, self.settings.instructions),
            synthesizer=self._engines.tts,
            voice=self.settings.voice,
            track=self._track,
            ahead_seconds=self._ahead,
            on_clause=lambda text: self._on_clause(response_id, item_id, text),
            on_error=lambda code, message: self._on_reply_error(response_id, code, message),
            on_synthesized=self._observer.tts_finished,
            incremental=self._incremental_tts,
        )

    def _activate(self, reply: Reply, timing: _Timing | None) -> None:
        self._active = _Active(reply, timing)
        item = events.message_item(reply.item_id, "assistant", None, status="in_progress", audio=True)
        previous = self._history[-1].id if self._history else None
        self._send(events.response_created(reply.response_id))
        self._send(events.output_item_added(reply.response_id, item))
        self._send(events.item_added(item, previous))
        self._send(events.content_part_added(reply.response_id, reply.item_id))
        reply.release()
        reply.task.add_done_callback(lambda _t: self._track.finish(reply.response_id))

    def _on_clause(self, response_id: str, item_id: str, text: str) -> None:
        if self._active is not None and self._active.reply.response_id == response_id:
            prefix = " " if self._active.extra.get("spoken") else ""
            self._active.extra["spoken"] = True
            self._send(events.audio_transcript_delta(response_id, item_id, prefix + text))

    def _on_reply_error(self, response_id: str, code: str, message: str) -> None:
        logger.warning("call %s: reply %s failed: %s", self.call_id, response_id, message)
        self._send(events.error(code, message, error_type="server_error"))

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
        if active is None or active.reply.response_id != tag:
            self._track.forget(tag)
            return
        self._active = None
        self._track.forget(tag)
        reply = active.reply
        text = reply.text
        if active.started:
            self._send(events.output_audio_stopped(tag))
        self._finish_response(active, text, truncated=False, status="failed" if reply.failed else "completed")

    def _interrupt(self, reason: str) -> None:
        """Stop the active reply now and truncate it to what was played."""
        active, self._active = self._active, None
        if active is None:
            return
        reply = active.reply
        reply.task.cancel()
        self._track.clear()
        _spawn(reply.cancel())
        played = self._track.played_samples(reply.response_id)
        self._track.forget(reply.response_id)
        heard = reply.heard_text(played)
        if active.started:
            self._send(events.output_audio_cleared(reply.response_id))
        self._send(events.item_truncated(reply.item_id, played * 1000 // TRACK_RATE))
        logger.info("call %s: reply %s interrupted (%s) after %d ms", self.call_id, reply.response_id, reason,
                    played * 1000 // TRACK_RATE)
        self._finish_response(active, heard, truncated=True, status="cancelled", reason=reason)

    def _finish_response(self, active: _Active, text: str, *, truncated: bool, status: str,
                         reason: str | None = None) -> None:
        reply = active.reply
        if active.timing is not None and not active.reported:  # ended before its first packet
            active.reported = True
            self._report_turn(active.timing, reply, None)
        self._record_assistant(reply.item_id, text, truncated)
        item = events.message_item(reply.item_id, "assistant", text, status="completed" if status == "completed"
                                   else "incomplete", audio=True)
        self._send(events.audio_transcript_done(reply.response_id, reply.item_id, text))
        self._send(events.content_part_done(reply.response_id, reply.item_id, text))
        self._send(events.output_item_done(reply.response_id, item))
        previous = self._previous_of(reply.item_id)
        self._send(events.item_done(item, previous))
        self._send(events.response_done(reply.response_id, status, [item], reason))

    def _record_assistant(self, item_id: str, text: str, truncated: bool) -> None:
        for item in self._history:
            if item.id == item_id:
                item.text, item.truncated = text, truncated
                return
        self._history.append(ConversationItem(item_id, "assistant", text, truncated))

    def _previous_of(self, item_id: str) -> str | None:
        ids = [item.id for item in self._history]
        index = ids.index(item_id) if item_id in ids else len(ids)
        return ids[index - 1] if index > 0 else None

    def _send_metrics(self, active: _Active, first_packet_at: float) -> None:
        timing, reply = active.timing, active.reply
        assert timing is not None

        def ms(at: float | None) -> float | None:
            return None if at is None else round((at - timing.speech_end) * 1000, 1)

        stages = {
            "speech_end": 0.0,
            "turn_confirmed": ms(timing.turn_confirmed),
            "asr_final": ms(timing.asr_final),
            "agent_first_text": ms(reply.agent_first_text_at),
            "tts_first_audio": ms(reply.tts_first_audio_at),
            "first_packet_sent": ms(first_packet_at),
        }
        self._send(events.turn_metrics(
            self._history[-1].id if self._history else "", reply.response_id, stages,
            speculative=timing.speculative,
            confirmed_to_first_packet_ms=round((first_packet_at - timing.turn_confirmed) * 1000, 1),
            asr_compute_ms=round(timing.asr_compute_s * 1000, 1),
            audio_ms=round(timing.audio_s * 1000),
        ))
        active.reported = True
        self._report_turn(timing, reply, first_packet_at)

    def _report_turn(self, timing: _Timing, reply: Reply | None, first_packet_at: float | None) -> None:
        """Tell the observer about a committed turn, with what is known of its reply."""

        def ms(at: float | None) -> float | None:
            return None if at is None else round((at - timing.speech_end) * 1000, 1)

        latency = {
            "turn_confirmed": ms(timing.turn_confirmed),
            "asr_final": ms(timing.asr_final),
            "agent_first_text": ms(reply.agent_first_text_at if reply is not None else None),
            "tts_first_audio": ms(reply.tts_first_audio_at if reply is not None else None),
            "first_packet_sent": ms(first_packet_at),
        }
        overhead = None if first_packet_at is None else round((first_packet_at - timing.turn_confirmed) * 1000, 1)
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

    # ---------------------------------------------------------- client events

    def update_settings(self, settings: SessionSettings) -> None:
        self.settings = settings
        self._detector.configure(threshold=settings.turn.threshold,
                                 silence_duration_ms=settings.turn.silence_duration_ms)

    def clear_input(self) -> None:
        utterance, self._utterance = self._utterance, None
        if utterance is not None:
            utterance.partials.cancel()
            self._drop_speculation(utterance)
            if utterance.finishing is not None:
                utterance.finishing.cancel()
        self._detector.reset()

    def commit_input(self) -> bool:
        """Force the end of the current utterance; False when there is none."""
        if self._utterance is None or self._utterance.finishing is not None:
            return False
        self._detector.reset()
        self._end_turn(self._audio.end * 1000 // SAMPLE_RATE)
        return True

    def cancel_response(self, reason: str) -> bool:
        if self._active is None:
            return False
        self._interrupt(reason)
        return True

    @property
    def active_response_id(self) -> str | None:
        """The response being spoken (or prepared to be), if any."""
        return self._active.reply.response_id if self._active is not None else None

    def add_item(self, item: ConversationItem) -> None:
        previous = self._history[-1].id if self._history else None
        self._history.append(item)
        if item.role == "assistant":
            self._pending_client_text = item
        payload = events.message_item(item.id, item.role, item.text, status="completed", audio=False)
        self._send(events.item_added(payload, previous))
        self._send(events.item_done(payload, previous))

    def create_response(self, instructions: str | None = None, agent: Agent | None = None) -> bool:
        """Start a reply now (from ``agent`` if given, e.g. client-streamed text); False if one is already active."""
        if self._active is not None:
            return False
        if agent is not None:
            agent.call_id = self.call_id
            reply = self._new_reply(agent, list(self._history))
        elif self._pending_client_text is not None:
            pending, self._pending_client_text = self._pending_client_text, None
            reply = self._new_reply(TextAgent(pending.text), list(self._history), item_id=pending.id)
        else:
            agent = self._engines.agents.create(self.settings.agent, call_id=self.call_id)
            reply = self._new_reply(agent, list(self._history))
        reply.start()
        self._activate(reply, None)
        return True

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.clear_input()
        active, self._active = self._active, None
        if active is not None:
            if active.timing is not None and not active.reported:  # hung up before the reply's first packet
                active.reported = True
                self._report_turn(active.timing, active.reply, None)
            active.reply.task.cancel()
            await active.reply.cancel()
        self._track.clear()


_background: set[asyncio.Task[None]] = set()


def _spawn(coroutine: object) -> None:
    """Run a short clean-up coroutine to completion without blocking the caller."""
    task: asyncio.Task[None] = asyncio.ensure_future(coroutine)  # type: ignore[arg-type]
    _background.add(task)
    task.add_done_callback(_background.discard)


async def drain_background() -> None:
    """Wait for pending clean-ups (used at shutdown and in tests)."""
    while _background:
        with contextlib.suppress(Exception):
            await asyncio.gather(*list(_background), return_exceptions=True)
