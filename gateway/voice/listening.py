"""The listening half of a call's conversation: the caller's audio in, turn events out.

:class:`Listening` is :class:`~gateway.voice.conversation.Conversation`'s base: it holds what
happens to the caller's audio — echo removed (:mod:`.echo`), cut into VAD windows, turned into
speech starts, pauses and turn ends (:mod:`.turns`), each pause judged with ``semantic_vad``
(:mod:`.endpointing`), speech over a reply paused and judged (:mod:`.interruptions`) — and the
conversation, the answering half, prepares and commits the turns it hands over
(:meth:`Listening._prepare`, :meth:`Listening._finish_turn`). The state both halves share is
declared here and set up by the conversation's constructor.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from engines.base import SAMPLE_RATE, FloatArray
from gateway.aio import TaskSet
from gateway.ops.observers import CallObserver
from gateway.protocol import server_events as events
from gateway.protocol.server_events import Event
from gateway.protocol.session_settings import SessionSettings
from gateway.voice.audio_buffer import RollingAudio
from gateway.voice.echo import EchoSuppression
from gateway.voice.endpointing import Endpointer, Verdict
from gateway.voice.engines import Engines
from gateway.voice.interruptions import InterruptionJudge
from gateway.voice.options import VoiceOptions
from gateway.voice.output import AudioOutput
from gateway.voice.playback import ResponsePlayer
from gateway.voice.transcription import PartialTranscriber
from gateway.voice.turns import SpeechPaused, SpeechResumed, SpeechStarted, TurnDetector, TurnEnded, TurnEvent
from gateway.voice.utterance import Prepared, Utterance


class Listening(abc.ABC):
    """Turn-taking for one call (see the module docstring); the conversation sets every field below."""

    call_id: str
    settings: SessionSettings
    speech_at: float
    barge_ins: int
    _engines: Engines
    _tasks: TaskSet
    _send: Callable[[Event], None]
    _observer: CallObserver
    _options: VoiceOptions
    _track: AudioOutput
    _vad: Any
    _window: FloatArray
    _detector: TurnDetector
    _endpointer: Endpointer
    _judge: InterruptionJudge
    _echo: EchoSuppression | None
    _audio: RollingAudio
    _utterance: Utterance | None
    _responses: ResponsePlayer
    _max_utterance: int
    _partial_interval: int
    _feed_at: float
    _stop_s: float
    _closed: bool

    @abc.abstractmethod
    async def _prepare(self, utterance: Utterance, end_sample: int, *, speculative: bool) -> Prepared:
        """The turn's final transcript and, with a speculative agent, its reply (held back)."""

    @abc.abstractmethod
    def _finish_turn(self, utterance: Utterance, confirmed_at: float) -> Coroutine[Any, Any, None]:
        """Commit the turn that ended (awaits its preparation)."""

    @property
    def in_turn(self) -> bool:
        """Whether the caller is in a turn (speech started, turn not ended): a call's costly state (admission)."""
        return self._utterance is not None

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
        if not self.settings.turn.enabled:
            self._buffer_manually(len(pcm))
            return
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

    def _buffer_manually(self, samples: int) -> None:
        """Turn detection off (``turn_detection: null``): the audio waits in the buffer for the client's commit."""
        self.speech_at = time.monotonic()  # audio flowing: the caller is there (idle limit)
        if self._utterance is None:
            start_ms = (self._audio.end - samples) * 1000 // SAMPLE_RATE
            self._utterance = self._new_utterance(start_ms + self.settings.turn.prefix_padding_ms)
        elif self._audio.end - self._utterance.start_sample > self._max_utterance:
            self._utterance.start_sample = self._audio.end - self._max_utterance  # the oldest audio is let go

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
        if response_id is None or not self.settings.turn.interrupt_response or not self.settings.responds:
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
            max_utilization=self._options.partials_max_utilization,
            window_samples=self._options.partial_window_ms * SAMPLE_RATE // 1000)
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
        if self.settings.turn.enabled:  # a client's commit is no detected end of speech
            self._send(events.speech_stopped(utterance.item_id, audio_end_ms))
        utterance.finish(self._finish_turn(utterance, time.monotonic()))
