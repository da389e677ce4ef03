"""The engine interfaces the gateway programs against.

Audio handed to and returned by engines is mono float32 in [-1, 1]. The VAD and
the recogniser take 16 kHz; a synthesiser says which rate it produces.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]

SAMPLE_RATE = 16_000


class VadStream(abc.ABC):
    """Per-call VAD state: feed fixed-size windows, get speech probabilities."""

    window_samples: int

    @abc.abstractmethod
    async def probabilities(self, windows: FloatArray) -> list[float]:
        """Speech probability of each row of ``windows`` (shape ``n × window_samples``)."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget the recurrent state (e.g. after a long gap in the audio)."""


class VoiceActivityDetector(abc.ABC):
    """A loaded VAD model; ``stream()`` gives each call its own state."""

    @abc.abstractmethod
    def stream(self) -> VadStream: ...

    async def warm_up(self) -> None:
        """Run the model once so the first call pays no start-up cost."""
        await self.stream().probabilities(np.zeros((1, self.stream().window_samples), np.float32))


@dataclass(frozen=True)
class Transcript:
    text: str
    audio_seconds: float
    compute_seconds: float
    #: The decode's mean log-probability per token, where the recogniser knows it (Whisper: its
    #: ``avg_logprob``; below -1.0 Whisper itself treats a decode as failed). None: unknown.
    avg_logprob: float | None = None
    #: The recogniser's degradation level when it decoded this (0 normal; 2: greedy, no temperature fallback:
    #: :meth:`engines.whisper.WhisperRecognizer.set_degradation`).
    degradation_level: int = 0


class SpeechRecognizer(abc.ABC):
    """A batch recogniser; the gateway makes it streaming with VAD events."""

    @abc.abstractmethod
    async def transcribe(self, audio: FloatArray, *, partial: bool = False) -> Transcript:
        """Transcribe 16 kHz mono audio.

        ``partial`` marks an interim hypothesis: it yields to final work and may be
        skipped (raising :class:`asyncio.CancelledError`) when newer work of the
        same caller supersedes it.
        """

    async def transcribe_hinted(self, audio: FloatArray, hint: str) -> Transcript | None:
        """A decode of ``audio`` told what it may well be: ``hint`` is text in the style expected (Whisper: a
        prompt). None where the recogniser takes no hint. The interruption judge's second opinion on a short
        sound (:mod:`gateway.voice.interruptions`)."""
        return None

    @property
    def queue_depth(self) -> int:
        return 0

    @property
    def utilization(self) -> float:
        """Share of the recogniser's capacity in use lately (0..1); 0 when it does not know."""
        return 0.0

    async def warm_up(self) -> None:
        await self.transcribe(np.zeros(SAMPLE_RATE // 2, np.float32))


@dataclass(frozen=True)
class SynthesizedAudio:
    """One piece of synthesised speech."""

    samples: FloatArray
    sample_rate: int


class SpeechSynthesizer(abc.ABC):
    """Text to speech; ``synthesize`` streams audio for one clause or sentence."""

    sample_rate: int
    voices: tuple[str, ...] = ("default",)

    @abc.abstractmethod
    def synthesize(
        self, text: str, *, voice: str | None = None, first: bool = False, speed: float = 1.0
    ) -> AsyncIterator[SynthesizedAudio]:
        """Audio for ``text``; ``first`` marks the opening clause of a reply (it jumps the queue); ``speed``
        (0.25..4) is the speaking rate, 1 the voice's own (the speech services pass it only when not 1)."""

    @property
    def queue_depth(self) -> int:
        return 0

    async def warm_up(self) -> None:
        async for _ in self.synthesize("Hello."):
            pass


@dataclass(frozen=True)
class EndOfTurn:
    """The model's judgement of one pause."""

    probability: float  # P(the turn is complete)
    compute_seconds: float


class EndOfTurnModel(abc.ABC):
    """Judges, from the audio of a turn so far, whether the caller has finished speaking."""

    @abc.abstractmethod
    async def predict(self, audio: FloatArray) -> EndOfTurn:
        """P(complete) for 16 kHz mono ``audio`` that ends at the pause (the last 8 s are used)."""

    async def warm_up(self) -> None:
        await self.predict(np.zeros(SAMPLE_RATE, np.float32))
