"""Fake engines implementing the real interfaces, for timing-exact unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

from engines.base import (
    FloatArray,
    SpeechRecognizer,
    SpeechSynthesizer,
    SynthesizedAudio,
    Transcript,
    VadStream,
    VoiceActivityDetector,
)
from gateway.agents import EchoAgent
from gateway.agents.registry import AgentRegistry
from gateway.voice.engines import Engines


class LoudnessVad(VoiceActivityDetector):
    """Speech probability 0.9 for windows with any sample above 0.1, else 0.0."""

    def stream(self) -> VadStream:
        return _LoudnessStream()


class _LoudnessStream(VadStream):
    window_samples = 512

    async def probabilities(self, windows: FloatArray) -> list[float]:
        return [0.9 if float(np.abs(w).max()) > 0.1 else 0.0 for w in windows]

    def reset(self) -> None:
        pass


class ScriptedAsr(SpeechRecognizer):
    """Says one word per 100 ms of loud audio; finals wait for ``release`` when it is set."""

    def __init__(self) -> None:
        self.release: asyncio.Event | None = None
        self.finals: list[int] = []

    async def transcribe(self, audio: FloatArray, *, partial: bool = False) -> Transcript:
        loud = int(np.sum(np.abs(audio) > 0.1))
        if not partial:
            self.finals.append(len(audio))
            if self.release is not None:
                await self.release.wait()
        words = " ".join(["word"] * (loud // 1600))
        return Transcript(text=words, audio_seconds=len(audio) / 16000, compute_seconds=0.0)


class ToneTts(SpeechSynthesizer):
    """100 ms of tone per word, at 16 kHz."""

    sample_rate = 16_000
    voices = ("tone",)

    async def synthesize(self, text: str, *, voice: str | None = None,
                         first: bool = False) -> AsyncIterator[SynthesizedAudio]:
        yield SynthesizedAudio(np.full(1600 * len(text.split()), 0.5, np.float32), self.sample_rate)


def fake_engines() -> tuple[Engines, ScriptedAsr]:
    asr = ScriptedAsr()
    return Engines(vad=LoudnessVad(), asr=asr, tts=ToneTts(), agents=AgentRegistry({"echo": EchoAgent})), asr


def loud(seconds: float) -> FloatArray:
    return np.full(int(seconds * 16000), 0.5, np.float32)


def quiet(seconds: float) -> FloatArray:
    return np.zeros(int(seconds * 16000), np.float32)
