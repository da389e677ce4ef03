"""Streaming transcription on top of a batch recogniser, driven by VAD events.

While the caller speaks, the growing utterance is re-decoded at a bounded rate
(partials run at low priority and never queue behind each other). A word is
published as a ``transcription.delta`` only once two consecutive hypotheses
agree on it, so deltas are never taken back. The final transcript is a decode
of the whole utterance: the same input an offline decode would get.

Re-decoding the whole utterance every 800 ms costs O(n²) on long utterances: a 12 s
one took 15 partials of up to 12 s each. With ``window_samples`` set, a partial
decodes only the audio since the last *seam*: once that exceeds the window, the
audio up to the quietest 20 ms within it is decoded once more as a closed segment,
its words are published, and partials continue from there. Each partial then
costs one decode of at most the window (docs/benchmarks.md "Where the CPU went").
A segment's first words that repeat the last published ones (the partials before
a seam may have published words beyond it) are skipped; a word cut at a seam can
still be heard twice or not at all in the deltas; the final
(``transcription.completed``) decodes the whole utterance and is unchanged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import numpy as np

from engines import EngineError, SpeechRecognizer, Transcript
from engines.base import SAMPLE_RATE, FloatArray
from engines.loops import normal, without_loop
from gateway.aio import TaskSet

logger = logging.getLogger(__name__)

FRAME = SAMPLE_RATE // 50  # 20 ms: the quietest one within a window becomes the seam


def _words(text: str) -> list[str]:
    return text.split()


def overlap(published: list[str], words: list[str], *, most: int = 8) -> int:
    """How many leading ``words`` repeat the last words of ``published`` (words already heard before a seam)."""
    for count in range(min(most, len(published), len(words)), 0, -1):
        if [normal(w) for w in published[-count:]] == [normal(w) for w in words[:count]]:
            return count
    return 0


def quietest_cut(audio: FloatArray, low: int, high: int) -> int:
    """The start of the 20 ms frame of least energy within ``audio[low:high]`` (a pause between words)."""
    frames = (high - low) // FRAME
    if frames < 1:
        return high
    energy = np.square(audio[low: low + frames * FRAME].reshape(frames, FRAME)).sum(axis=1)
    return low + int(np.argmin(energy)) * FRAME


class PartialTranscriber:
    """Publishes stable partial words of one utterance. Its decodes are tasks of ``tasks`` (the conversation's).

    ``window_samples`` (0: the whole utterance every time) bounds the audio of one partial decode.
    """

    def __init__(self, recognizer: SpeechRecognizer, on_delta: Callable[[str], None], *, interval_samples: int,
                 tasks: TaskSet, max_utilization: float = 1.0, window_samples: int = 0) -> None:
        if window_samples and window_samples < 2 * SAMPLE_RATE:
            raise ValueError("a partial window must be 0 (the whole utterance) or at least 2 s")
        self._recognizer = recognizer
        self._tasks = tasks
        self._max_utilization = max_utilization
        self._on_delta = on_delta
        self._interval = interval_samples
        self._window = window_samples
        self._seam = 0  # partials decode the utterance's audio from here (samples into the utterance)
        self._previous: list[str] = []
        self._published = 0  # words published since the seam
        self._last_decoded_end = 0
        self._task: asyncio.Task[None] | None = None
        self.text = ""
        #: Audio decoded by partials, in samples (what bounded windows keep linear in the utterance's length).
        self.samples_decoded = 0

    def maybe_decode(self, audio: Callable[[], FloatArray], audio_end: int) -> None:
        """Start a partial decode if enough new audio arrived and none is running."""
        if self._interval <= 0 or (self._task is not None and not self._task.done()):
            return
        if audio_end - self._last_decoded_end < self._interval:
            return
        if self._recognizer.queue_depth > 0 or self._recognizer.utilization > self._max_utilization:
            return  # the recogniser is busy: partials are shed first, finals keep their latency
        self._last_decoded_end = audio_end
        samples = audio()[self._seam:]
        if self._window and len(samples) > self._window:
            cut = quietest_cut(samples, self._window * 2 // 5, self._window)
            self._seam += cut
            self._task = self._tasks.create_task(self._decode(samples[:cut], closed=True), name="partial-decode")
        else:
            self._task = self._tasks.create_task(self._decode(samples, closed=False), name="partial-decode")

    async def _decode(self, samples: FloatArray, *, closed: bool) -> None:
        """Publish the words two hypotheses agree on; all of a ``closed`` segment's (no audio will follow it)."""
        self.samples_decoded += len(samples)
        try:
            transcript = await self._recognizer.transcribe(samples, partial=True)
        except EngineError as exc:
            logger.debug("partial decode failed: %s", exc)
            if closed:
                self._previous, self._published = [], 0
            return
        words = without_loop(_words(transcript.text))
        if self._seam and not self._published:  # a new segment may start with words published before its seam
            self._published = overlap(_words(self.text), words)
        stable = len(words) if closed else 0
        while (
            stable < min(len(words), len(self._previous))
            and normal(words[stable]) == normal(self._previous[stable])
        ):
            stable += 1
        self._previous = words
        if stable > self._published:
            delta = " ".join(words[self._published : stable])
            prefix = " " if self.text else ""
            self.text = (self.text + " " + delta).strip()
            self._published = stable
            self._on_delta(prefix + delta)
        if closed:
            self._previous, self._published = [], 0

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None


async def final_transcript(recognizer: SpeechRecognizer, samples: FloatArray) -> Transcript:
    return await recognizer.transcribe(samples, partial=False)
