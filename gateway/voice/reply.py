"""One spoken reply: agent text → clauses → TTS → the outbound track.

A reply can be *prepared* before the turn is confirmed (speculation): its audio
is held back until :meth:`Reply.release`. After release, every clause's audio
goes to the track as soon as it is synthesised, at most ``ahead_seconds`` ahead
of playback. :meth:`Reply.cancel` stops the agent and synthesis at once; the
track is cleared by the conversation. The reply remembers which samples carry
which clause, so it can say what text the caller actually heard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np

from engines import EngineError, SpeechSynthesizer, SynthesizedAudio
from gateway.agents import AgentError
from gateway.voice.clauses import ClauseSplitter
from media import OutboundAudioTrack, PcmConverter
from media.outbound import RATE as TRACK_RATE
from media.pcm import Int16Array, trim_leading_silence

logger = logging.getLogger(__name__)

#: A clause whose synthesis yields no audio for this long fails the reply (``tts_failed``), so that a stalled
#: TTS engine never holds a call's turn-taking hostage.
SYNTHESIS_STALL_SECONDS = 15.0


@dataclass
class _Clause:
    text: str
    start: int  # first sample in the reply's audio (48 kHz)
    end: int


class Reply:
    def __init__(
        self,
        *,
        response_id: str,
        item_id: str,
        pieces: AsyncIterator[str],
        synthesizer: SpeechSynthesizer,
        voice: str,
        track: OutboundAudioTrack,
        ahead_seconds: float,
        on_clause: Callable[[str], None],
        on_error: Callable[[str, str], None],
        incremental: bool = True,
        on_synthesized: Callable[[float, float], None] | None = None,
    ) -> None:
        self.response_id = response_id
        self.item_id = item_id
        self._pieces = pieces
        self._tts = synthesizer
        self._voice = voice
        self._track = track
        self._ahead = ahead_seconds
        self._on_clause = on_clause
        self._on_error = on_error
        self._incremental = incremental
        self._on_synthesized = on_synthesized  # (audio s, wall s) of each clause: the TTS real-time factor
        self._converter = PcmConverter(TRACK_RATE, sample_format="s16")
        self._clauses: list[_Clause] = []
        self._held: list[tuple[str, Int16Array]] = []
        self._released = False
        self._samples = 0
        self.first_audio = asyncio.Event()
        self.failed = False
        self.agent_first_text_at: float | None = None
        self.tts_first_audio_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"reply-{self.response_id}")
        self._task.add_done_callback(lambda _t: self.first_audio.set())

    @property
    def task(self) -> asyncio.Task[None]:
        assert self._task is not None, "start() first"
        return self._task

    @property
    def released(self) -> bool:
        return self._released

    @property
    def text(self) -> str:
        """All the text synthesised so far."""
        return " ".join(clause.text for clause in self._clauses)

    def release(self) -> None:
        """Send held audio to the track; later audio goes straight there."""
        self._released = True
        held, self._held = self._held, []
        for text, pcm in held:
            self._emit(text, pcm)

    def heard_text(self, played_samples: int) -> str:
        """The text the caller heard after ``played_samples`` of this reply were sent."""
        words: list[str] = []
        for clause in self._clauses:
            if played_samples >= clause.end:
                words.extend(clause.text.split())
            elif played_samples > clause.start:
                clause_words = clause.text.split()
                fraction = (played_samples - clause.start) / max(1, clause.end - clause.start)
                words.extend(clause_words[: int(len(clause_words) * fraction)])
        return " ".join(words)

    async def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await _aclose(self._pieces)

    async def _run(self) -> None:
        splitter = ClauseSplitter() if self._incremental else ClauseSplitter.whole_text()
        try:
            async for piece in self._pieces:
                if self.agent_first_text_at is None and piece.strip():
                    self.agent_first_text_at = time.monotonic()
                for clause in splitter.push(piece):
                    await self._speak(clause)
            for clause in splitter.flush():
                await self._speak(clause)
            self._flush_audio()
        except AgentError as exc:
            self.failed = True
            self._on_error(exc.code, str(exc))
            if exc.apology:
                await self._apologize(exc.apology)
        except EngineError as exc:
            self.failed = True
            self._on_error("tts_failed", str(exc))
        finally:
            await _aclose(self._pieces)

    def _flush_audio(self) -> None:
        tail = self._converter.convert(None).astype(np.int16, copy=False)  # the resampler's last samples
        if len(tail):
            self._samples += len(tail)
            self._queue_audio("", tail)

    async def _apologize(self, text: str) -> None:
        """After an agent failure: close the agent, then speak its apology in place of the rest."""
        await _aclose(self._pieces)
        try:
            await self._speak(text)
            self._flush_audio()
        except EngineError as exc:
            self._on_error("tts_failed", str(exc))

    async def _speak(self, text: str) -> None:
        first = not self._clauses
        start = self._samples
        label = text  # the clause's text travels with its first piece of audio
        started = time.monotonic()
        synthesis = self._tts.synthesize(text, voice=self._voice, first=first)
        async for audio in _within(synthesis, SYNTHESIS_STALL_SECONDS):
            pcm = self._converter.convert_array(audio.samples, audio.sample_rate).astype(np.int16, copy=False)
            if self._samples == 0:  # the reply's first sound is heard as soon as it can be
                pcm = trim_leading_silence(pcm, TRACK_RATE)
            if not len(pcm):
                continue
            if self.tts_first_audio_at is None:
                self.tts_first_audio_at = time.monotonic()
            self._samples += len(pcm)
            self._queue_audio(label, pcm)
            label = ""
        if self._on_synthesized is not None:
            self._on_synthesized((self._samples - start) / TRACK_RATE, time.monotonic() - started)
        self._clauses.append(_Clause(text, start, self._samples))
        self.first_audio.set()
        if self._released:
            await self._track.wait_for_space(self._ahead)

    def _queue_audio(self, text: str, pcm: Int16Array) -> None:
        if self._released:
            self._emit(text, pcm)
        else:
            self._held.append((text, pcm))

    def _emit(self, text: str, pcm: Int16Array) -> None:
        self._track.push(self.response_id, pcm)
        if text:
            self._on_clause(text)


async def _aclose(pieces: AsyncIterator[str]) -> None:
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
