"""Helpers for the reliability tests: a gateway with an end-recording observer, engines that fail on cue."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from engines import EngineError, SpeechRecognizer, SpeechSynthesizer, SynthesizedAudio, Transcript
from engines.base import FloatArray
from gateway.app.application import REGISTRY, create_app
from gateway.config import AdmissionConfig, EventsConfig, GatewayConfig, LimitsConfig
from gateway.ops.observers import CallObserver
from gateway.session.registry import SessionRegistry
from gateway.voice.engines import Engines

Client = TestClient[Any, Any]
MakeClient = Callable[..., Awaitable[Client]]  # the make_client fixture (conftest.py)


class EndRecorder(CallObserver):
    """Remembers how and when each call ended."""

    def __init__(self) -> None:
        self.ended: dict[str, tuple[str, float]] = {}
        self._changed = asyncio.Condition()

    def call_ended(self, call_id: str, reason: str, duration_s: float, turns: int) -> None:
        self.ended[call_id] = (reason, time.monotonic())
        asyncio.ensure_future(self._notify())  # noqa: RUF006 - a notification, nothing to await

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait(self, call_id: str, timeout: float) -> tuple[str, float]:  # noqa: ASYNC109
        """(reason, monotonic time) of the end of ``call_id``."""

        async def ended() -> tuple[str, float]:
            async with self._changed:
                await self._changed.wait_for(lambda: call_id in self.ended)
            return self.ended[call_id]

        return await asyncio.wait_for(ended(), timeout)


@dataclass
class Gateway:
    url: str
    registry: SessionRegistry
    ends: EndRecorder = field(default_factory=EndRecorder)


@contextlib.asynccontextmanager
async def running_gateway(engines: Engines, **limits: Any) -> AsyncIterator[Gateway]:
    """A gateway on a real port with ``limits``; it records call ends."""
    ends = EndRecorder()
    limits = {"max_loop_lag_ms": 0, "max_asr_wait_ms": 0, **limits}  # no refusal because the machine is busy
    config = GatewayConfig(events=EventsConfig(file=""), limits=LimitsConfig(**limits),
                           admission=AdmissionConfig(enabled=False))  # tested in tests/gateway/test_admission.py
    server = TestServer(create_app(config, engines=engines, observers=[ends]), host="127.0.0.1")
    await server.start_server()
    try:
        yield Gateway(str(server.make_url("")).rstrip("/"), server.app[REGISTRY], ends)
    finally:
        await server.close()


def call_id(location: str | None) -> str:
    assert location is not None
    return location.rsplit("/", 1)[1]


STALL_VOICE = "stall"


class FlakyAsr(SpeechRecognizer):
    """The real recogniser, except that final transcriptions raise while ``fail`` is set."""

    def __init__(self, inner: SpeechRecognizer) -> None:
        self.inner = inner
        self.fail = False

    async def transcribe(self, audio: FloatArray, *, partial: bool = False) -> Transcript:
        if self.fail and not partial:
            raise EngineError("asr", "injected failure", retryable=True)
        return await self.inner.transcribe(audio, partial=partial)


class FlakyTts(SpeechSynthesizer):
    """The real synthesiser, except that it raises while ``fail`` is set.

    It has one more voice, :data:`STALL_VOICE`: the real default voice, except that
    while ``stalling`` is set its synthesis hangs (until cancelled). A call that
    selects it has a TTS that stalls; the other calls do not.
    """

    def __init__(self, inner: SpeechSynthesizer) -> None:
        self.inner = inner
        self.sample_rate = inner.sample_rate
        self.voices = (*inner.voices, STALL_VOICE)
        self.fail = False
        self.stalling = True
        self.stalled = 0

    async def synthesize(self, text: str, *, voice: str | None = None,
                         first: bool = False) -> AsyncIterator[SynthesizedAudio]:
        if voice == STALL_VOICE:
            voice = None
            if self.stalling:
                self.stalled += 1
                await asyncio.Event().wait()  # forever, until cancelled
        first_piece = True
        async for audio in self.inner.synthesize(text, voice=voice, first=first):
            if self.fail and first_piece:
                raise EngineError("tts", "injected failure", retryable=True)
            first_piece = False
            yield audio


def flaky_engines(engines: Engines) -> tuple[Engines, FlakyAsr, FlakyTts]:
    asr, tts = FlakyAsr(engines.asr), FlakyTts(engines.tts)
    return Engines(vad=engines.vad, asr=asr, tts=tts, agents=engines.agents), asr, tts
