"""A caller without echo cancellation: its microphone hears the gateway's reply (real speech, real VAD)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from engines.base import FloatArray, SpeechSynthesizer, SynthesizedAudio, Transcript
from engines.silero import SileroVad
from gateway.agents import ConversationItem
from gateway.config import GatewayConfig
from gateway.protocol.session_settings import SessionSettings
from gateway.voice.conversation import Conversation
from gateway.voice.options import VoiceOptions
from media import OutboundAudioTrack
from tests.support.fakes import ScriptedAsr, fake_engines
from tests.support.speech import utterance

RATE = 16_000
FRAME = 320


class SpeechTts(SpeechSynthesizer):
    """Speaks 6 s of a real recording, whatever the text."""

    sample_rate = RATE
    voices = ("recorded",)

    async def synthesize(self, text: str, *, voice: str | None = None,
                         first: bool = False) -> AsyncIterator[SynthesizedAudio]:
        yield SynthesizedAudio(utterance("realpython_harvard.wav").audio()[: 6 * RATE], RATE)


class WordsAsr(ScriptedAsr):
    async def transcribe(self, audio: FloatArray, *, partial: bool = False) -> Transcript:
        return Transcript("Hold on, I have another question.", len(audio) / RATE, 0.0)


class EchoingCaller:
    """Every 20 ms: the gateway sends a frame; the microphone returns it 90 ms later at -6 dB, filtered, noisy."""

    def __init__(self, *, echo_cancellation: bool, delay_ms: int = 90, gain_db: float = -6.0) -> None:
        engines, _ = fake_engines()
        self.engines = replace(engines, vad=SileroVad(), asr=WordsAsr(), tts=SpeechTts())
        self.track = OutboundAudioTrack()
        self.events: list[dict[str, Any]] = []
        settings = SessionSettings.from_config(GatewayConfig(), self.engines.tts.voices)
        settings = replace(settings, turn=replace(settings.turn, echo_cancellation=echo_cancellation))
        self.conversation = Conversation(
            call_id="rtc_echo", engines=self.engines, track=self.track, send=self.events.append, settings=settings,
            options=VoiceOptions(max_utterance_seconds=30, tts_ahead_seconds=60, partial_interval_ms=0))
        self.sent = np.zeros(0, np.float32)
        self.delay = delay_ms * RATE // 1000
        self.gain = 10 ** (gain_db / 20)
        self.noise = np.random.default_rng(7)
        self.fed = 0

    async def run(self, seconds: float, talk: npt.NDArray[np.float32] | None = None, talk_at: float = 0.0) -> None:
        for _ in range(int(seconds * 50)):
            frame = self.track.next_frame()[1]
            pcm = np.zeros(960, np.float32) if frame is None else frame.astype(np.float32) / 32768
            self.sent = np.concatenate([self.sent, pcm.reshape(-1, 3).mean(axis=1)])
            start = self.fed - self.delay
            heard = np.zeros(FRAME, np.float32)
            if start + FRAME > 0:
                lo = max(0, start)
                heard[lo - start :] = self.sent[lo : start + FRAME]
            mic = np.convolve(heard, [0.3, 0.6, 0.3, -0.2])[:FRAME] * self.gain
            mic += self.noise.normal(0, 0.002, FRAME).astype(np.float32)
            if talk is not None:
                offset = self.fed - int(talk_at * RATE)
                if 0 <= offset < len(talk):
                    mic[: min(FRAME, len(talk) - offset)] += talk[offset : offset + FRAME]
            self.fed += FRAME
            await self.conversation.feed(mic.astype(np.float32))
            await asyncio.sleep(0.001)  # the VAD and the canceller run in their workers

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["type"] == type_]

    async def start_reply(self) -> None:
        self.conversation.add_item(ConversationItem("item_a", "assistant", "The stale smell of old beer lingers."))
        assert self.conversation.create_response()


@pytest.mark.parametrize("echo_cancellation", [True, False])
async def test_the_gateway_does_not_interrupt_itself_when_its_voice_comes_back(echo_cancellation: bool) -> None:
    caller = EchoingCaller(echo_cancellation=echo_cancellation)
    await caller.start_reply()
    await caller.run(5.0)
    self_interrupted = bool(caller.of("input_audio_buffer.speech_started"))
    assert self_interrupted is not echo_cancellation  # without the canceller the echo is barge-in
    await caller.conversation.close()
    caller.engines.close()


async def test_real_speech_over_the_echo_still_stops_the_reply() -> None:
    caller = EchoingCaller(echo_cancellation=True)
    await caller.start_reply()
    talk = utterance("timit_LDC93S1.wav").audio()
    await caller.run(5.0, talk=talk, talk_at=2.0)
    started = caller.of("input_audio_buffer.speech_started")
    assert started and started[0]["audio_start_ms"] - 2000 <= 500  # the onset, on the caller's audio clock
    assert caller.of("gateway.response.paused") and caller.of("conversation.item.truncated")
    await caller.conversation.close()
    caller.engines.close()
