"""Partial transcripts: published when stable, shed when the recogniser is busy."""

from __future__ import annotations

import asyncio

import numpy as np

from engines.base import SpeechRecognizer, Transcript
from gateway.aio import TaskSet
from gateway.voice.transcription import PartialTranscriber


class _Recognizer(SpeechRecognizer):
    def __init__(self, utilization: float) -> None:
        self.busy = utilization
        self.calls = 0

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcript:
        self.calls += 1
        return Transcript(text="hello there world", audio_seconds=len(audio) / 16000, compute_seconds=0.01)

    @property
    def utilization(self) -> float:
        return self.busy


async def _decode_twice(recognizer: _Recognizer) -> list[str]:
    deltas: list[str] = []
    tasks = TaskSet("test")
    partials = PartialTranscriber(recognizer, deltas.append, interval_samples=1600, tasks=tasks, max_utilization=0.5)
    audio = np.zeros(16000, np.float32)
    for end in (3200, 6400):
        partials.maybe_decode(lambda end=end: audio[:end], end)
        await asyncio.sleep(0.01)
    await tasks.close()
    return deltas


async def test_partials_are_published_once_two_hypotheses_agree() -> None:
    recognizer = _Recognizer(utilization=0.2)
    assert await _decode_twice(recognizer) == ["hello there world"]
    assert recognizer.calls == 2


async def test_partials_are_shed_while_the_recogniser_is_busy() -> None:
    recognizer = _Recognizer(utilization=0.8)
    assert await _decode_twice(recognizer) == []
    assert recognizer.calls == 0
