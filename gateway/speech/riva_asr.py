"""``nvidia.riva.asr.RivaSpeechRecognition``: ``Recognize`` (a whole recording) and ``StreamingRecognize``.

Audio: ``LINEAR_PCM`` is raw signed 16-bit little-endian at ``sample_rate_hertz`` with
``audio_channel_count`` interleaved channels (mixed down) — unless it starts with a RIFF header (the
Riva client sends WAV files as they are), which, like ``FLAC`` and ``OGGOPUS``, is decoded by av.
``MULAW``/``ALAW`` are ``INVALID_ARGUMENT``. ``Recognize`` answers one result per decode window
(:mod:`gateway.speech.segments`) with its ``audio_processed`` (the window's end, seconds); word time
offsets, alternatives beyond one, diarization, punctuation switches and speech contexts are accepted and
not applied (the recogniser has no such options). ``StreamingRecognize``: :mod:`gateway.speech.riva_streaming`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from riva.client.proto import riva_asr_pb2 as rasr
from riva.client.proto import riva_asr_pb2_grpc as rasr_grpc
from riva.client.proto import riva_audio_pb2 as raudio

from engines.base import FloatArray
from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.speech import grpc_errors
from gateway.speech.audio import AudioInputError, raw_pcm
from gateway.speech.lanes import lane_of, peer_client
from gateway.speech.riva_streaming import StreamingRecognition
from gateway.speech.service import SpeechServices

DECODED_ENCODINGS = (raudio.AudioEncoding.FLAC, raudio.AudioEncoding.OGGOPUS, raudio.AudioEncoding.ENCODING_UNSPECIFIED)


def is_raw_pcm(config: rasr.RecognitionConfig, audio: bytes) -> bool:
    """Raw PCM, not a container the client sent under LINEAR_PCM (a WAV file)."""
    if config.encoding in DECODED_ENCODINGS:
        return False
    if config.encoding != raudio.AudioEncoding.LINEAR_PCM:
        raise GatewayError("unsupported_encoding", f"encoding {raudio.AudioEncoding.Name(config.encoding)} "
                           "is not supported; use LINEAR_PCM, FLAC or OGGOPUS")
    return not audio.startswith(b"RIFF")


class RivaRecognition(rasr_grpc.RivaSpeechRecognitionServicer):  # type: ignore[misc]
    def __init__(self, services: SpeechServices, config: GatewayConfig) -> None:
        self._services = services
        self._config = config

    async def _audio(self, config: rasr.RecognitionConfig, data: bytes) -> FloatArray:
        if not data:
            raise GatewayError("missing_audio", "the request has no audio")
        if not is_raw_pcm(config, data):
            return await self._services.decode(data)
        if config.sample_rate_hertz <= 0:
            raise GatewayError("invalid_sample_rate", "LINEAR_PCM needs sample_rate_hertz")
        try:
            return await asyncio.to_thread(raw_pcm, data, config.sample_rate_hertz, config.audio_channel_count or 1,
                                           max_seconds=self._config.speech.max_audio_seconds)
        except AudioInputError as exc:
            raise GatewayError(exc.code, exc.message) from None

    async def Recognize(self, request: rasr.RecognizeRequest,
                        context: grpc.aio.ServicerContext) -> rasr.RecognizeResponse:
        try:
            self._services.language(request.config.language_code or None)
            lane = lane_of(context)
            if lane is not None:  # a remote gateway's call: one decode at the live priority
                audio = await self._audio(request.config, request.audio)
                text = await self._services.live_transcribe(audio, partial=lane == "partial")
                return rasr.RecognizeResponse(results=[_result(text, len(audio) / 16_000)])
            with self._services.job(peer_client(context)):
                audio = await self._audio(request.config, request.audio)
            results = [_result(segment.text, segment.end) async for segment in self._services.segments(audio)]
            return rasr.RecognizeResponse(results=results)
        except GatewayError as exc:
            await grpc_errors.abort_with(context, exc)
            raise  # abort raised already; for the type checker

    async def StreamingRecognize(self, requests: AsyncIterator[rasr.StreamingRecognizeRequest],
                                 context: grpc.aio.ServicerContext) -> AsyncIterator[rasr.StreamingRecognizeResponse]:
        recognition = StreamingRecognition(self._services, self._config, live=lane_of(context) is not None,
                                           client=peer_client(context))
        try:
            async for response in recognition.run(requests):
                yield response
        except GatewayError as exc:
            await grpc_errors.abort_with(context, exc)

    async def GetRivaSpeechRecognitionConfig(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        config = rasr.RivaSpeechRecognitionConfigResponse.Config(
            model_name="voice-gateway-asr", parameters={"language_code": self._config.engines.asr_language or "en",
                                                         "type": "online,offline"})
        return rasr.RivaSpeechRecognitionConfigResponse(model_config=[config])


def _result(text: str, processed: float) -> rasr.SpeechRecognitionResult:
    return rasr.SpeechRecognitionResult(
        alternatives=[rasr.SpeechRecognitionAlternative(transcript=text)],  # confidence: not measured (0)
        audio_processed=processed)
