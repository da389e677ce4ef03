"""``nvidia.riva.tts.RivaSpeechSynthesis``: ``Synthesize`` (the whole text) and ``SynthesizeOnline`` (streamed).

``text`` is required and at most ``speech.max_input_chars``; ``voice_name`` is a configured voice or
an OpenAI voice name (:mod:`gateway.speech.catalog`), empty for the first voice; ``encoding`` is
``LINEAR_PCM`` (raw signed 16-bit little-endian, the default) or ``OGGOPUS``; ``sample_rate_hz`` is any
rate (the audio is resampled; 0: the voice's own). ``custom_configuration["speed"]`` (0.25..4) is the
speaking rate. ``SynthesizeOnline`` sends each clause's audio as soon as it is synthesised; with several
requests on the stream, their texts are spoken one after the other. ``language_code``,
``custom_dictionary``, zero-shot data and word time offsets are accepted and not applied.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from riva.client.proto import riva_audio_pb2 as raudio
from riva.client.proto import riva_tts_pb2 as rtts
from riva.client.proto import riva_tts_pb2_grpc as rtts_grpc

from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.speech import grpc_errors
from gateway.speech.audio import AudioEncoder
from gateway.speech.lanes import lane_of, peer_client
from gateway.speech.service import SpeechServices
from gateway.voice.engines import Engines

ENCODINGS = {raudio.AudioEncoding.LINEAR_PCM: "pcm", raudio.AudioEncoding.ENCODING_UNSPECIFIED: "pcm",
             raudio.AudioEncoding.OGGOPUS: "opus"}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


class RivaSynthesis(rtts_grpc.RivaSpeechSynthesisServicer):  # type: ignore[misc]
    def __init__(self, services: SpeechServices, config: GatewayConfig) -> None:
        self._services = services
        self._config = config

    def _check(self, engines: Engines, request: rtts.SynthesizeSpeechRequest) -> tuple[str, AudioEncoder, float]:
        limit = self._config.speech.max_input_chars
        if not request.text.strip():
            raise GatewayError("empty_input", "text must not be empty")
        if len(request.text) > limit:
            raise GatewayError("input_too_long", f"text is {len(request.text)} characters; at most {limit}")
        voice = self._services.check_voice(engines, request.voice_name) if request.voice_name else engines.tts.voices[0]
        fmt = ENCODINGS.get(request.encoding)
        if fmt is None:
            raise GatewayError("unsupported_encoding", "encoding must be LINEAR_PCM or OGGOPUS")
        rate = request.sample_rate_hz or engines.tts.sample_rate
        if not 8000 <= rate <= 96_000 or (fmt == "opus" and rate not in OPUS_RATES):
            raise GatewayError("invalid_sample_rate", f"sample_rate_hz {rate} is not supported")
        try:
            speed = float(request.custom_configuration.get("speed", "1"))
        except ValueError:
            speed = 0.0
        if not 0.25 <= speed <= 4.0:
            raise GatewayError("invalid_value", "custom_configuration speed must be 0.25..4")
        return voice, AudioEncoder(fmt, engines.tts.sample_rate, output_rate=rate), speed

    async def _audio(self, engines: Engines, request: rtts.SynthesizeSpeechRequest, *,
                     live: bool) -> AsyncIterator[bytes]:
        voice, encoder, speed = self._check(engines, request)
        try:
            async for samples in self._services.clauses(engines, request.text, voice, speed, batch=not live):
                if chunk := await asyncio.to_thread(encoder.encode, samples):
                    yield chunk
            if tail := await asyncio.to_thread(encoder.finish):
                yield tail
        finally:
            encoder.close()

    async def Synthesize(self, request: rtts.SynthesizeSpeechRequest,
                         context: grpc.aio.ServicerContext) -> rtts.SynthesizeSpeechResponse:
        try:
            if lane_of(context) is not None:
                audio = b"".join([c async for c in self._audio(self._services.live_engines(), request, live=True)])
            else:
                with self._services.job(peer_client(context)) as engines:
                    audio = b"".join([c async for c in self._audio(engines, request, live=False)])
            return rtts.SynthesizeSpeechResponse(audio=audio)
        except GatewayError as exc:
            await grpc_errors.abort_with(context, exc)
            raise

    async def SynthesizeOnline(self, requests: AsyncIterator[rtts.SynthesizeSpeechRequest],
                               context: grpc.aio.ServicerContext) -> AsyncIterator[rtts.SynthesizeSpeechResponse]:
        live = lane_of(context) is not None
        try:
            async for request in requests:
                if live:
                    chunks = self._audio(self._services.live_engines(), request, live=True)
                    async for chunk in chunks:
                        yield rtts.SynthesizeSpeechResponse(audio=chunk)
                    continue
                with self._services.job(peer_client(context)) as engines:
                    async for chunk in self._audio(engines, request, live=False):
                        yield rtts.SynthesizeSpeechResponse(audio=chunk)
        except GatewayError as exc:
            await grpc_errors.abort_with(context, exc)

    async def GetRivaSynthesisConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        engines = self._services.live_engines() if self._services.models() else None
        voices = engines.tts.voices if engines is not None else ()
        rate = str(engines.tts.sample_rate) if engines is not None else ""
        configs = [rtts.RivaSynthesisConfigResponse.Config(model_name=f"voice-gateway-tts-{voice}", parameters={
            "voice_name": voice, "language_code": "en-US", "sample_rate": rate, "type": "online,offline"})
            for voice in voices]
        return rtts.RivaSynthesisConfigResponse(model_config=configs)
