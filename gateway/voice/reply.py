"""One spoken reply: agent text → clauses → TTS → the audio output.

A reply can be *prepared* before the turn is confirmed (speculation): its audio
is held back until :meth:`Reply.release`. After release, every clause's audio
goes to the output as soon as it is synthesised, at most ``ahead_seconds`` ahead
of playback. :meth:`Reply.interrupt` is the one way to stop a reply: it cancels
the agent and synthesis and, once the reply was released, clears its audio from
the output; it is safe to call any number of times, from barge-in, from
``response.cancel`` or when a speculation is dropped. The reply remembers which
samples carry which clause, so it can say what text the caller actually heard.

The agent's function-call pieces go to the listener as they arrive (held, like
audio, until release). A reply whose output modality is text synthesises
nothing: its text pieces go to the listener as they arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engines import EngineError, SpeechSynthesizer, SynthesizedAudio
from gateway.agents import AgentError, AgentPiece, FunctionCallDelta
from gateway.aio import TaskSet
from gateway.voice.clauses import ClauseSplitter
from gateway.voice.output import OUTPUT_RATE, AudioOutput
from media import PcmConverter
from media.pcm import Int16Array, trim_leading_silence

logger = logging.getLogger(__name__)

#: A clause whose synthesis yields no audio for this long fails the reply (``tts_failed``), so that a stalled
#: TTS engine never holds a call's turn-taking hostage.
SYNTHESIS_STALL_SECONDS = 15.0


@dataclass(frozen=True)
class ReplyOptions:
    """How one reply is spoken (the voice may change between replies with ``session.update``)."""

    voice: str
    ahead_seconds: float  # synthesised audio queued ahead of playback, at most
    incremental: bool = True  # synthesise clause by clause as the agent's text arrives
    audio: bool = True  # False: output modality text (no synthesis; text pieces go to the listener)
    may_call_tools: bool = False  # the agent may answer with function calls instead of (or after) words

    def __post_init__(self) -> None:
        if self.ahead_seconds <= 0:
            raise ValueError("ahead_seconds must be positive")


class ReplyListener(Protocol):
    """Who hears what a reply does while it runs (the conversation's :class:`ResponsePlayer`)."""

    def reply_clause(self, reply: Reply, text: str) -> None:
        """The first audio of a clause of ``reply``, whose text is ``text``, went to the output."""

    def reply_failed(self, reply: Reply, code: str, message: str) -> None:
        """The agent or the synthesiser failed; the reply ends (perhaps after an apology)."""

    def reply_message_started(self, reply: Reply) -> None:
        """The agent's first words arrived: the reply has a message item (before its first clause or text)."""

    def reply_text(self, reply: Reply, text: str) -> None:
        """A piece of a text-modality reply."""

    def reply_function_call(self, reply: Reply, delta: FunctionCallDelta) -> None:
        """A piece of a function call the agent is making."""

    def clause_synthesized(self, audio_seconds: float, wall_seconds: float) -> None:
        """A clause of ``audio_seconds`` took ``wall_seconds`` to synthesise: the TTS real-time factor."""


@dataclass(frozen=True)
class ReplyContext:
    """What every reply of one conversation shares: the synthesiser, the output, the listener, the task set."""

    synthesizer: SpeechSynthesizer
    output: AudioOutput
    listener: ReplyListener
    tasks: TaskSet


@dataclass
class _Clause:
    text: str
    start: int  # first sample in the reply's audio (48 kHz)
    end: int


class Reply:
    def __init__(self, *, response_id: str, item_id: str, pieces: AsyncIterator[AgentPiece], options: ReplyOptions,
                 context: ReplyContext) -> None:
        self.response_id = response_id
        self.item_id = item_id
        self._pieces = pieces
        self._options = options
        self._context = context
        self._converter = PcmConverter(OUTPUT_RATE, sample_format="s16")
        self._clauses: list[_Clause] = []
        self._texts: list[str] = []  # a text-modality reply's pieces
        self._message_started = False
        self._held: list[Callable[[], None]] = []  # what waits for release(), in order
        self._released = False
        self._interrupted = False
        self._samples = 0
        self.first_audio = asyncio.Event()
        self.failed = False
        self.agent_first_text_at: float | None = None
        self.tts_first_audio_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = self._context.tasks.create_task(self._run(), name=f"reply-{self.response_id}")
        self._task.add_done_callback(lambda _t: self.first_audio.set())

    def add_done_callback(self, callback: Callable[[Reply], None]) -> None:
        """Call ``callback`` once the agent and synthesis are over (done, failed or interrupted)."""
        assert self._task is not None, "start() first"
        self._task.add_done_callback(lambda _t: callback(self))

    @property
    def released(self) -> bool:
        return self._released

    @property
    def interrupted(self) -> bool:
        return self._interrupted

    @property
    def options(self) -> ReplyOptions:
        return self._options

    @property
    def text(self) -> str:
        """All the text synthesised (or, in text modality, sent) so far."""
        if not self._options.audio:
            return "".join(self._texts)
        return " ".join(clause.text for clause in self._clauses)

    @property
    def audio_samples(self) -> int:
        """The reply's audio so far, in 48 kHz samples."""
        return self._samples

    def release(self) -> None:
        """Send held audio (and held pieces) to the output; later ones go straight there."""
        self._released = True
        held, self._held = self._held, []
        for action in held:
            action()

    def heard_text(self, played_samples: int) -> str:
        """The text the caller heard after ``played_samples`` of this reply were sent (in text modality: all)."""
        if not self._options.audio:
            return self.text
        words: list[str] = []
        for clause in self._clauses:
            if played_samples >= clause.end:
                words.extend(clause.text.split())
            elif played_samples > clause.start:
                clause_words = clause.text.split()
                fraction = (played_samples - clause.start) / max(1, clause.end - clause.start)
                words.extend(clause_words[: int(len(clause_words) * fraction)])
        return " ".join(words)

    def interrupt(self) -> None:
        """Stop now: cancel the agent and synthesis and, once released, clear its audio from the output.

        Idempotent: only the first call does anything, so barge-in, ``response.cancel`` and a
        dropped speculation may all reach the same reply. The output reports the cut audio's
        :class:`PlayoutResult` (interrupted) to its listener. Held audio of a reply that was never
        released is not in the output, so another reply's audio is left alone."""
        if self._interrupted:
            return
        self._interrupted = True
        if self._task is not None:
            self._task.cancel()  # the task closes the agent's stream on its way out
        if self._released:
            self._context.output.clear()

    async def aclose(self) -> None:
        """:meth:`interrupt`, then wait until the agent and synthesis have stopped and the agent's stream is closed.

        The stream is closed here too, for a reply interrupted before its task ever ran."""
        self.interrupt()
        if self._task is not None:
            await asyncio.wait([self._task])
        await _aclose(self._pieces)

    async def _run(self) -> None:
        splitter = ClauseSplitter() if self._options.incremental else ClauseSplitter.whole_text()
        try:
            async for piece in self._pieces:
                if isinstance(piece, FunctionCallDelta):
                    self._later(functools.partial(self._context.listener.reply_function_call, self, piece))
                    continue
                if self.agent_first_text_at is None and piece.strip():
                    self.agent_first_text_at = time.monotonic()
                    self._start_message()
                if not self._options.audio:
                    self._write(piece)
                    continue
                for clause in splitter.push(piece):
                    await self._speak(clause)
            for clause in splitter.flush():
                await self._speak(clause)
            self._flush_audio()
        except AgentError as exc:
            self.failed = True
            self._context.listener.reply_failed(self, exc.code, str(exc))
            if exc.apology:
                await self._apologize(exc.apology)
        except EngineError as exc:
            self.failed = True
            self._context.listener.reply_failed(self, "tts_failed", str(exc))
        finally:
            await _aclose(self._pieces)

    def _flush_audio(self) -> None:
        tail = self._converter.convert(None).astype(np.int16, copy=False)  # the resampler's last samples
        if len(tail):
            self._samples += len(tail)
            self._queue_audio("", tail)

    def _later(self, action: Callable[[], None]) -> None:
        """Do ``action`` now if released, else at release (after what is already held)."""
        if self._released:
            action()
        else:
            self._held.append(action)

    def _start_message(self) -> None:
        if not self._message_started:
            self._message_started = True
            self._later(lambda: self._context.listener.reply_message_started(self))

    def _write(self, text: str) -> None:
        """A piece of a text-modality reply."""
        if text:
            self._texts.append(text)
            self._later(lambda: self._context.listener.reply_text(self, text))
            self.first_audio.set()  # what a speculative turn waits for: the reply is ready

    async def _apologize(self, text: str) -> None:
        """After an agent failure: close the agent, then speak its apology in place of the rest."""
        await _aclose(self._pieces)
        self._start_message()
        if not self._options.audio:
            self._write(text)
            return
        try:
            await self._speak(text)
            self._flush_audio()
        except EngineError as exc:
            self._context.listener.reply_failed(self, "tts_failed", str(exc))

    async def _speak(self, text: str) -> None:
        first = not self._clauses
        start = self._samples
        label = text  # the clause's text travels with its first piece of audio
        started = time.monotonic()
        synthesis = self._context.synthesizer.synthesize(text, voice=self._options.voice, first=first)
        async for audio in _within(synthesis, SYNTHESIS_STALL_SECONDS):
            pcm = self._converter.convert_array(audio.samples, audio.sample_rate).astype(np.int16, copy=False)
            if self._samples == 0:  # the reply's first sound is heard as soon as it can be
                pcm = trim_leading_silence(pcm, OUTPUT_RATE)
            if not len(pcm):
                continue
            if self.tts_first_audio_at is None:
                self.tts_first_audio_at = time.monotonic()
            self._samples += len(pcm)
            self._queue_audio(label, pcm)
            label = ""
        self._context.listener.clause_synthesized((self._samples - start) / OUTPUT_RATE, time.monotonic() - started)
        self._clauses.append(_Clause(text, start, self._samples))
        self.first_audio.set()
        if self._released:
            await self._context.output.wait_for_space(self._options.ahead_seconds)

    def _queue_audio(self, text: str, pcm: Int16Array) -> None:
        self._later(lambda: self._emit(text, pcm))

    def _emit(self, text: str, pcm: Int16Array) -> None:
        self._context.output.push(self.response_id, pcm)
        if text:
            self._context.listener.reply_clause(self, text)


async def _aclose(pieces: AsyncIterator[AgentPiece]) -> None:
    close = getattr(pieces, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()


async def _within(pieces: AsyncIterator[SynthesizedAudio], seconds: float) -> AsyncIterator[SynthesizedAudio]:
    """``pieces``, failing with an EngineError when the next one takes longer than ``seconds``."""
    try:
        while True:
            try:
                async with asyncio.timeout(seconds):
                    piece = await anext(pieces)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                raise EngineError("tts", f"synthesis stalled for {seconds:g} s", retryable=True) from exc
            yield piece
    finally:
        close = getattr(pieces, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
