"""One call's conversation: turn-taking, replies, barge-in and truncation.

Everything that decides *when* the gateway listens, answers or stops talking
lives here. The caller's audio comes in through :meth:`Conversation.feed`; VAD
probabilities drive a :class:`TurnDetector`; the turn's final transcript is
decoded speculatively as soon as the caller falls silent, and with a
speculative agent the reply is synthesised (held back) inside the silence
window, so that it starts the moment the turn is confirmed.

* Barge-in: speech over a reply pauses it within a frame (:mod:`.interruptions`); words beyond a
  backchannel interrupt it (:meth:`Reply.interrupt`: agent and synthesis cancelled, the item
  truncated to what the output reports was played), a cough or an "mm-hmm" resumes it.
* A pause is not a turn: speech that resumes before the reply is committed cancels the pending
  reply and the same utterance goes on. ``semantic_vad``: the end-of-turn model judges each
  pause and sets the silence that ends it (:mod:`.endpointing`).

Every task the conversation starts (speculation, a turn's end, partial decodes,
replies) belongs to one :class:`~gateway.aio.TaskSet`, cancelled and awaited by
:meth:`Conversation.close`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import numpy as np

from engines import EngineError, Transcript
from engines.base import SAMPLE_RATE, FloatArray
from gateway.agents import Agent, ConversationItem, TextAgent
from gateway.aio import TaskSet
from gateway.ops.observers import NULL_OBSERVER, CallObserver
from gateway.protocol import server_events as events
from gateway.protocol.server_events import Event
from gateway.protocol.session_settings import SessionSettings
from gateway.voice.audio_buffer import RollingAudio
from gateway.voice.echo import EchoSuppression
from gateway.voice.endpointing import Endpointer, Verdict
from gateway.voice.engines import Engines
from gateway.voice.history import History
from gateway.voice.interruptions import InterruptionJudge
from gateway.voice.options import VoiceOptions
from gateway.voice.output import AudioOutput
from gateway.voice.playback import ResponsePlayer, TurnTiming
from gateway.voice.reply import Reply, ReplyContext, ReplyOptions
from gateway.voice.transcription import PartialTranscriber
from gateway.voice.turns import SpeechPaused, SpeechResumed, SpeechStarted, TurnDetector, TurnEnded, TurnEvent
from gateway.voice.utterance import Prepared, Utterance, committed_events

logger = logging.getLogger(__name__)


class Conversation:
    def __init__(
        self,
        *,
        call_id: str,
        engines: Engines,
        track: AudioOutput,
        send: Callable[[Event], None],
        settings: SessionSettings,
        options: VoiceOptions,
        observer: CallObserver = NULL_OBSERVER,
        tasks: TaskSet | None = None,
    ) -> None:
        """``track`` is where replies are heard (any :class:`AudioOutput`); ``tasks``, the session's task set
        (one of its own if None), which :meth:`close` cancels and awaits."""
        self.call_id = call_id
        self._engines = engines
        self._tasks = tasks if tasks is not None else TaskSet(f"call {call_id}")
        self._send = send
        self._observer = observer
        self.settings = settings
        self._vad = engines.vad.stream()
        self._track = track
        self._detector = TurnDetector()
        self._endpointer = Endpointer(engines.end_of_turn, tasks=self._tasks, call_id=call_id, observer=observer,
                                      on_verdict=self._verdict)
        self._judge = InterruptionJudge(asr=engines.asr, output=track, send=send, tasks=self._tasks, call_id=call_id,
                                        observer=observer, on_real=self._interruption_confirmed,
                                        on_false=self._false_interruption)
        self._max_utterance = int(options.max_utterance_seconds * SAMPLE_RATE)
        self._audio = RollingAudio(self._max_utterance + 4 * SAMPLE_RATE)
        self._window = np.zeros(0, np.float32)
        self._options = options
        self._partial_interval = options.partial_interval_ms * SAMPLE_RATE // 1000
        self._utterance: Utterance | None = None
        self._history = History(max_items=options.max_history_items, max_chars=options.max_history_chars,
                                call_id=call_id, on_drop=lambda count: observer.history_items_dropped(call_id, count))
        self._responses = ResponsePlayer(call_id=call_id, output=track, send=send, observer=observer,
                                         history=self._history)
        self._reply_context = ReplyContext(synthesizer=engines.tts, output=track, listener=self._responses,
                                           tasks=self._tasks)
        self._pending_client_text: ConversationItem | None = None
        self._feed_at = self._stop_s = 0.0  # speech onset over a reply → its audio paused or cleared
        self._closed = False
        self.turns = 0
        self.barge_ins = 0
        self.speech_at = time.monotonic()  # when the caller last started speaking (idle limit)
        self._echo: EchoSuppression | None = None  # made when a session first asks for echo cancellation
        self.update_settings(settings)

    # ------------------------------------------------------------------ input

    async def feed(self, pcm: FloatArray) -> None:
        """The caller's next 16 kHz samples, in order."""
        if self._closed:
            return
        self._feed_at = time.monotonic()
        if self._echo is not None and self.settings.turn.echo_cancellation:
            pcm = await self._echo.clean(pcm)
            if self._closed:
                return
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
                self._after_window((start + size) * 1000 // SAMPLE_RATE)
        utterance = self._utterance
        if utterance is not None and self._detector.speaking and not utterance.finishing:
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
            if self._judge.pending:
                self._judge.sound_paused(self._utterance_audio(), event.audio_end_ms)
        elif isinstance(event, SpeechResumed):
            self._endpointer.cancel()
            self._judge.sound_resumed()
            if self._utterance is not None:
                self._utterance.drop_speculation()
        elif isinstance(event, TurnEnded):
            self._end_turn(event.audio_end_ms)

    def _utterance_audio(self) -> FloatArray:
        return self._audio.slice(self._utterance.start_sample if self._utterance else self._audio.end, self._audio.end)

    def _after_window(self, now_ms: int) -> None:
        """Per VAD window, on the audio clock: judge a pause (semantic_vad), check an onset over a reply."""
        if self._judge.pending:
            self._judge.tick(now_ms, self._utterance_audio)
        utterance = self._utterance
        if self.settings.turn.type == "semantic_vad" and utterance is not None:
            self._endpointer.after_window(self._detector, utterance, self._utterance_audio, now_ms)

    def _verdict(self, verdict: Verdict) -> None:
        if (utterance := self._utterance) is None:
            return
        self._send(verdict.event(utterance.item_id))
        for event in self._detector.end_after(verdict.silence_ms, self._audio.end * 1000 // SAMPLE_RATE):
            self._on_turn_event(event)

    def _speech_started(self, audio_start_ms: int) -> None:
        self.speech_at = time.monotonic()
        utterance = self._utterance
        if utterance is not None:
            utterance.resume()  # a pause is not a turn: the reply was not committed yet, so drop it and go on
        else:
            utterance = self._utterance = self._new_utterance(audio_start_ms)
        self._send(events.speech_started(utterance.item_id, audio_start_ms))
        response_id = self._responses.active_response_id
        if response_id is None or not self.settings.turn.interrupt_response:
            return
        now_ms = self._audio.end * 1000 // SAMPLE_RATE
        self._stop_s = time.monotonic() - (self._feed_at - max(0, now_ms - audio_start_ms) / 1000)
        if self._judge.pending:
            self._judge.sound_resumed()  # the same sound goes on: it is still being judged
        elif self.settings.turn.false_interruption:
            self._judge.onset(response_id, audio_start_ms)  # the reply pauses; the words decide
        else:
            self._interruption_confirmed()

    def _interruption_confirmed(self) -> None:
        """Barge-in: the reply is cancelled and truncated to what was heard."""
        self.barge_ins += 1
        self._responses.interrupt("turn_detected")
        self._observer.barge_in(self.call_id, self._stop_s)

    def _false_interruption(self) -> None:
        """A cough or a backchannel is not a turn (the judge resumes the reply it paused)."""
        utterance, self._utterance = self._utterance, None
        if utterance is not None:
            utterance.discard()
            self._send(events.speech_stopped(utterance.item_id, self._audio.end * 1000 // SAMPLE_RATE))
        self._detector.reset()
        self._endpointer.reset()

    def _new_utterance(self, audio_start_ms: int) -> Utterance:
        item_id = events.new_id("item")
        partials = PartialTranscriber(self._engines.asr, lambda delta: self._send(events.transcription_delta(
            item_id, delta)), interval_samples=self._partial_interval, tasks=self._tasks,
            max_utilization=self._options.partials_max_utilization)
        start = max(0, (audio_start_ms - self.settings.turn.prefix_padding_ms) * SAMPLE_RATE // 1000)
        return Utterance(item_id=item_id, start_sample=start, partials=partials, tasks=self._tasks)

    def _start_speculation(self, audio_end_ms: int) -> None:
        utterance = self._utterance
        if utterance is None or utterance.finishing or not self._options.speculative:
            return
        utterance.speculate(self._prepare(utterance, self._audio.end, speculative=True))

    def _end_turn(self, audio_end_ms: int) -> None:
        utterance = self._utterance
        if utterance is None:
            return
        utterance.partials.cancel()
        utterance.end_ms = audio_end_ms
        now_ms = self._audio.end * 1000 // SAMPLE_RATE
        utterance.speech_end_at = self._feed_at - max(0, now_ms - audio_end_ms) / 1000
        self._send(events.speech_stopped(utterance.item_id, audio_end_ms))
        utterance.finish(self._finish_turn(utterance, time.monotonic()))

    # ------------------------------------------------------------------ turns

    async def _prepare(self, utterance: Utterance, end_sample: int, *, speculative: bool) -> Prepared:
        samples = self._audio.slice(utterance.start_sample, end_sample)
        transcript = await self._engines.asr.transcribe(samples)
        done_at = time.monotonic()
        self._observer.asr_finished(transcript.audio_seconds, transcript.compute_seconds)
        reply = None
        text = transcript.text.strip()
        if text and self.settings.turn.create_response:
            agent = self._engines.agents.create(self.settings.agent, call_id=self.call_id)
            if agent.speculative:
                pending = ConversationItem(utterance.item_id, "user", text)
                reply = self._new_reply(agent, self._history.snapshot(pending))
                reply.start()
        return Prepared(transcript, done_at, reply)

    async def _finish_turn(self, utterance: Utterance, confirmed_at: float) -> None:
        speculation = utterance.take_speculation()
        speculative = speculation is not None
        try:
            prepared = await (speculation or self._prepare(utterance, self._audio.end, speculative=False))
        except EngineError as exc:
            self._utterance = None
            self._send(events.transcription_failed(utterance.item_id, str(exc)))
            self._send(events.error("asr_failed", str(exc), error_type="server_error"))
            logger.warning("call %s: transcription failed: %s", self.call_id, exc)
            return
        reply = prepared.reply
        # A prepared reply is committed with its first audio: until then, speech that resumes
        # continues the same utterance (a pause is not a turn). Speech over a paused reply is a
        # turn only once the interruption judge says it was a real interruption.
        try:
            if reply is not None:
                await reply.first_audio.wait()
            real = await self._judge.decision()
        except asyncio.CancelledError:
            if reply is not None:
                await reply.aclose()
            raise
        if not real:  # a cough or a backchannel: the reply it paused has resumed
            if reply is not None:
                await reply.aclose()
            return
        # Commit point: from here on the turn is final and nothing awaits.
        self._utterance = None
        text = prepared.transcript.text.strip()
        if not text:
            logger.info("call %s: utterance %s had no words; discarded", self.call_id, utterance.item_id)
            return
        self._commit(utterance.item_id, text, prepared.transcript)
        timing = TurnTiming(
            speech_end=utterance.speech_end_at,
            turn_confirmed=confirmed_at,
            asr_final=prepared.asr_done_at,
            speculative=speculative,
            asr_compute_s=prepared.transcript.compute_seconds,
            audio_s=prepared.transcript.audio_seconds,
            item_id=utterance.item_id,
            transcript=text,
        )
        if reply is None and self.settings.turn.create_response:
            # An agent that may not run speculatively (an external service) starts now; the
            # turn is already committed, so its transcript events do not wait for its answer.
            agent = self._engines.agents.create(self.settings.agent, call_id=self.call_id)
            reply = self._new_reply(agent, self._history.snapshot())
            reply.start()
        if reply is None:
            self._responses.report_turn(timing, None, None)
            return
        self._responses.activate(reply, timing)

    def _commit(self, item_id: str, text: str, transcript: Transcript) -> None:
        self.turns += 1
        for event in committed_events(item_id, text, self._history.last_id):
            self._send(event)
        self._history.append(ConversationItem(item_id, "user", text))
        logger.info("call %s: turn %s committed (%.1f s of audio, asr %.0f ms)", self.call_id, item_id,
                    transcript.audio_seconds, transcript.compute_seconds * 1000)

    # ---------------------------------------------------------------- replies

    def _new_reply(self, agent: Agent, history: list[ConversationItem], item_id: str | None = None) -> Reply:
        options = ReplyOptions(voice=self.settings.voice, ahead_seconds=self._options.tts_ahead_seconds,
                               incremental=self._options.incremental_tts)
        return Reply(response_id=events.new_id("resp"), item_id=item_id or events.new_id("item"),
                     pieces=agent.reply(history, self.settings.instructions), options=options,
                     context=self._reply_context)

    # ---------------------------------------------------------- client events

    def update_settings(self, settings: SessionSettings) -> None:
        self.settings = settings
        turn = settings.turn
        semantic = turn.type == "semantic_vad" and self._endpointer.configure(turn.eagerness)
        silence_ms = self._endpointer.eagerness.cap_ms if semantic else turn.silence_duration_ms  # cap until judged
        self._detector.configure(threshold=turn.threshold, silence_duration_ms=silence_ms)
        self._judge.timeout_ms = turn.false_interruption_timeout_ms
        if turn.echo_cancellation and self._echo is None:
            self._echo = EchoSuppression(self._engines.echo.stream())
            self._track.add_tap(self._echo.reference.heard)

    def clear_input(self) -> None:
        utterance, self._utterance = self._utterance, None
        if utterance is not None:
            utterance.discard()
        self._detector.reset()
        self._endpointer.reset()
        self._judge.discard()

    def commit_input(self) -> bool:
        """Force the end of the current utterance; False when there is none."""
        if self._utterance is None or self._utterance.finishing:
            return False
        self._detector.reset()
        self._end_turn(self._audio.end * 1000 // SAMPLE_RATE)
        return True

    def cancel_response(self, reason: str) -> bool:
        self._judge.discard()
        return self._responses.interrupt(reason)

    @property
    def active_response_id(self) -> str | None:
        return self._responses.active_response_id

    def add_item(self, item: ConversationItem) -> None:
        previous = self._history.last_id
        self._history.append(item)
        if item.role == "assistant":
            self._pending_client_text = item
        payload = events.message_item(item.id, item.role, item.text, status="completed", audio=False)
        self._send(events.item_added(payload, previous))
        self._send(events.item_done(payload, previous))

    def create_response(self, instructions: str | None = None, agent: Agent | None = None) -> bool:
        """Start a reply now (from ``agent`` if given, e.g. client-streamed text); False if one is already active."""
        if self._responses.active_response_id is not None:
            return False
        if agent is not None:
            agent.call_id = self.call_id
            reply = self._new_reply(agent, self._history.snapshot())
        elif self._pending_client_text is not None:
            pending, self._pending_client_text = self._pending_client_text, None
            reply = self._new_reply(TextAgent(pending.text), self._history.snapshot(), item_id=pending.id)
        else:
            agent = self._engines.agents.create(self.settings.agent, call_id=self.call_id)
            reply = self._new_reply(agent, self._history.snapshot())
        reply.start()
        self._responses.activate(reply, None)
        return True

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        """Hang-up: drop the utterance and the reply, then cancel and await every task (safe twice).

        The task set is closed even when the session passed it in: once this returns, nothing
        the conversation started is still running."""
        if self._closed:
            return
        self._closed = True
        self.clear_input()
        await self._responses.close()
        await self._tasks.close()
