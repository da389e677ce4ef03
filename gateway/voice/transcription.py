"""Streaming transcription on top of a batch recogniser, driven by VAD events.

While the caller speaks, the growing utterance is re-decoded at a bounded rate
(partials run at low priority and never queue behind each other). A word is
published as a ``transcription.delta`` only once two consecutive hypotheses
agree on it, so deltas are never taken back. The final transcript is a decode
of the whole utterance: the same input an offline decode would get.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from engines import EngineError, SpeechRecognizer, Transcript
from engines.base import FloatArray
from gateway.aio import TaskSet

logger = logging.getLogger(__name__)


def _words(text: str) -> list[str]:
    return text.split()


def _normal(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum())


class PartialTranscriber:
    """Publishes stable partial words of one utterance. Its decodes are tasks of ``tasks`` (the conversation's)."""

    def __init__(self, recognizer: SpeechRecognizer, on_delta: Callable[[str], None], *, interval_samples: int,
                 tasks: TaskSet, max_utilization: float = 1.0) -> None:
        self._recognizer = recognizer
        self._tasks = tasks
        self._max_utilization = max_utilization
        self._on_delta = on_delta
        self._interval = interval_samples
        self._previous: list[str] = []
        self._published = 0
        self._last_decoded_end = 0
        self._task: asyncio.Task[None] | None = None
        self.text = ""

    def maybe_decode(self, audio: Callable[[], FloatArray], audio_end: int) -> None:
        """Start a partial decode if enough new audio arrived and none is running."""
        if self._interval <= 0 or (self._task is not None and not self._task.done()):
            return
        if audio_end - self._last_decoded_end < self._interval:
            return
        if self._recognizer.queue_depth > 0 or self._recognizer.utilization > self._max_utilization:
            return  # the recogniser is busy: partials are shed first, finals keep their latency
        self._last_decoded_end = audio_end
        self._task = self._tasks.create_task(self._decode(audio()), name="partial-decode")

    async def _decode(self, samples: FloatArray) -> None:
        try:
            transcript = await self._recognizer.transcribe(samples, partial=True)
        except EngineError as exc:
            logger.debug("partial decode failed: %s", exc)
            return
        words = _words(transcript.text)
        stable = 0
        while (
            stable < min(len(words), len(self._previous))
            and _normal(words[stable]) == _normal(self._previous[stable])
        ):
            stable += 1
        self._previous = words
        if stable > self._published:
            delta = " ".join(words[self._published : stable])
            self.text = (self.text + " " + delta).strip()
            prefix = " " if self._published else ""
            self._published = stable
            self._on_delta(prefix + delta)

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


async def final_transcript(recognizer: SpeechRecognizer, samples: FloatArray) -> Transcript:
    return await recognizer.transcribe(samples, partial=False)
