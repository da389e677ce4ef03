"""The speech services behind ``/v1/audio/*`` (and the gRPC servicers): admission, decoding, the engines.

Admission is the calls': engines loaded, not draining, not at ``limits.max_calls``, not overloaded
(:meth:`SessionRegistry.check_admission`), plus at most ``speech.max_jobs`` speech jobs at once
(503 ``capacity``). Every engine call runs in the batch lane (:func:`engines.worker.batch_lane`): live
calls' decodes and clauses go first. Uploads are decoded in a thread, bounded in duration while they
decode (:mod:`gateway.speech.audio`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Iterator

from engines import EngineError
from engines.base import SAMPLE_RATE, FloatArray
from engines.worker import batch_lane
from gateway.config import GatewayConfig
from gateway.errors import GatewayError, Unavailable
from gateway.session.registry import SessionRegistry
from gateway.speech.audio import FORMATS, AudioEncoder, AudioInputError, decode_audio
from gateway.speech.catalog import VoiceMap, check_model, models
from gateway.speech.segments import plan_windows
from gateway.voice.clauses import ClauseSplitter
from gateway.voice.engines import Engines
from signaling.speech_service import (
    ModelInfo,
    SpeechRequest,
    SpeechStream,
    Transcription,
    TranscriptionRequest,
    TranscriptionStart,
    TranscriptSegment,
)

LANGUAGE_NAMES = {"en": "english"}


async def aclose(iterator: AsyncIterator[object]) -> None:
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()


class TooManyJobs(GatewayError):
    status = 429


class EngineFailed(GatewayError):
    status = 502
    error_type = "server_error"


class SpeechServices:
    def __init__(self, config: GatewayConfig, registry: SessionRegistry) -> None:
        self._config = config
        self._registry = registry
        self._voices = VoiceMap(config.speech.voice_map)
        self._jobs = 0
        self._clients: dict[str, int] = {}  # gRPC callers' jobs at once, by address (IPv6: /64)

    def models(self) -> list[ModelInfo]:
        return models() if self._registry.engines is not None else []

    @property
    def jobs(self) -> int:
        return self._jobs

    @contextlib.contextmanager
    def job(self, client: str | None = None) -> Iterator[Engines]:
        """Admit one speech job (raising Unavailable) and hold its slot until the block ends.

        ``client`` (a gRPC caller's address; HTTP bounds its requests per client itself) may hold at most
        ``speech.max_jobs_per_client`` jobs at once (``too_many_jobs``, 429).
        """
        engines = self._registry.check_admission()
        if self._jobs >= self._config.speech.max_jobs:
            raise Unavailable("capacity", f"{self._jobs} speech jobs are running; try again later", retry_after=1)
        per_client = self._config.speech.max_jobs_per_client
        held = self._clients.get(client, 0) if client is not None else 0
        if client is not None and per_client and held >= per_client:
            raise TooManyJobs("too_many_jobs", f"at most {per_client} speech jobs at once from one address",
                              retry_after=1)
        self._jobs += 1
        if client is not None:
            self._clients[client] = held + 1
        try:
            yield engines
        finally:
            self._jobs -= 1
            if client is not None:
                self._clients[client] -= 1
                if not self._clients[client]:
                    del self._clients[client]

    def live_engines(self) -> Engines:
        """The engines for a remote gateway's live request: loaded is enough (its calls were admitted there)."""
        engines = self._registry.engines
        if engines is None:
            raise Unavailable("engine_unavailable", "the speech engines are not loaded", retry_after=5)
        return engines

    async def live_transcribe(self, audio: FloatArray, *, partial: bool) -> str:
        try:
            transcript = await self.live_engines().asr.transcribe(audio, partial=partial)
        except EngineError as exc:
            raise EngineFailed("transcription_failed", str(exc)) from None
        return transcript.text.strip()

    def language(self, requested: str | None) -> str:
        configured = self._config.engines.asr_language or "en"
        if requested and requested.split("-")[0].lower() != configured:
            raise GatewayError("unsupported_language", f"this gateway transcribes {configured!r} only")
        return configured

    async def decode(self, data: bytes) -> FloatArray:
        try:
            return await asyncio.to_thread(decode_audio, data, max_seconds=self._config.speech.max_audio_seconds)
        except AudioInputError as exc:
            raise GatewayError(exc.code, exc.message) from None

    async def transcribe(self, request: TranscriptionRequest) -> Transcription:
        check_model(request.model, "transcription")
        language = self.language(request.language)
        with self.job():  # decoding counts as a job too: it is the heavy part of a long upload
            audio = await self.decode(request.audio)
        start = TranscriptionStart(duration=len(audio) / SAMPLE_RATE, language=LANGUAGE_NAMES.get(language, language))
        return start, self.segments(audio)

    async def segments(self, audio: FloatArray) -> AsyncGenerator[TranscriptSegment, None]:
        """The transcript of ``audio``, one segment per decode window, each as soon as it is decoded."""
        with self.job() as engines:
            try:
                with batch_lane():
                    windows = await plan_windows(engines.vad, audio)
                for window in windows:
                    with batch_lane():  # set around each await, never across a yield
                        transcript = await engines.asr.transcribe(audio[window.start : window.end])
                    start, end = window.seconds
                    yield TranscriptSegment(start=start, end=end, text=transcript.text.strip())
            except EngineError as exc:
                raise EngineFailed("transcription_failed", str(exc)) from None

    def check_voice(self, engines: Engines, voice: str) -> str:
        return self._voices.resolve(voice, engines.tts.voices)

    async def synthesize(self, request: SpeechRequest) -> SpeechStream:
        check_model(request.model, "speech")
        engines = self._registry.check_admission()
        voice = self.check_voice(engines, request.voice)
        if request.response_format not in FORMATS:
            raise GatewayError("invalid_response_format", f"response_format must be one of {', '.join(FORMATS)}")
        return SpeechStream(mime_type=FORMATS[request.response_format][2], chunks=self._speak(request, voice))

    async def _speak(self, request: SpeechRequest, voice: str) -> AsyncGenerator[bytes, None]:
        """The encoded audio, clause by clause (the encoder lives as long as this generator runs)."""
        with self.job() as engines:
            encoder = AudioEncoder(request.response_format, engines.tts.sample_rate)
            try:
                async for samples in self.clauses(engines, request.input, voice, request.speed):
                    if chunk := await asyncio.to_thread(encoder.encode, samples):
                        yield chunk
                yield await asyncio.to_thread(encoder.finish)
            finally:
                encoder.close()

    async def clauses(self, engines: Engines, text: str, voice: str, speed: float = 1.0, *,
                      batch: bool = True) -> AsyncIterator[FloatArray]:
        """The audio of ``text`` clause by clause (the engine's rate), as each clause is synthesised; in the
        batch lane unless ``batch`` is false (a remote gateway's reply)."""
        splitter = ClauseSplitter()
        options = {"speed": speed} if speed != 1.0 else {}
        try:
            for index, clause in enumerate([*splitter.push(text), *splitter.flush()]):
                pieces = engines.tts.synthesize(clause, voice=voice, first=index == 0, **options)
                try:
                    while True:
                        with batch_lane() if batch else contextlib.nullcontext():  # around each await, never a yield
                            piece = await anext(pieces, None)
                        if piece is None:
                            break
                        yield piece.samples
                finally:
                    await aclose(pieces)
        except EngineError as exc:
            raise EngineFailed("synthesis_failed", str(exc)) from None
