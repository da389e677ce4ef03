"""``StreamingRecognize``: raw PCM in as it is captured, interim and final transcripts out, with endpointing.

The first request carries ``streaming_config`` (``LINEAR_PCM`` only: a stream has no container to
decode), the others ``audio_content``. Every 32 ms window goes through silero-vad. An utterance starts
after ``start_history`` ms (default 96) of windows at or above ``start_threshold`` (0.5) and ends after
``stop_history`` ms (800) below ``stop_threshold`` (0.5), or at ``media.max_utterance_seconds``; it is
then decoded whole and sent with ``is_final = true``. Riva applies its thresholds to the acoustic
model's non-blank share; here they are silero's speech probability (``stop_history_eou`` and
``stop_threshold_eou`` are not used). With ``interim_results``, the utterance so far is decoded every
:data:`INTERIM_SECONDS` of new speech and sent with ``is_final = false``, ``stability`` 0.5.
``audio_processed`` is the seconds of audio received. The stream's audio is bounded by
``speech.max_audio_seconds`` (``RESOURCE_EXHAUSTED`` beyond it).

Cancelling the RPC cancels the pending decode (it is awaited in the RPC's task).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import numpy as np
from riva.client.proto import riva_asr_pb2 as rasr
from riva.client.proto import riva_audio_pb2 as raudio

from engines import EngineError
from engines.base import SAMPLE_RATE, FloatArray, VadStream
from engines.worker import batch_lane
from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.speech.audio import AudioInputError, PcmConverter
from gateway.speech.service import EngineFailed, SpeechServices
from gateway.voice.engines import Engines

INTERIM_SECONDS = 0.8
PREFIX_SECONDS = 0.3  # audio kept before the detected start (silero starts late)
TRAILING_SECONDS = 0.3  # of the silence that ended an utterance, what is decoded with it
WINDOW_MS = 32


class Endpointer:
    """Speech start and end from VAD probabilities, in windows (see the module doc)."""

    def __init__(self, config: rasr.EndpointingConfig) -> None:
        self.start_windows = max(1, (config.start_history or 96) // WINDOW_MS)
        self.stop_windows = max(1, (config.stop_history or 800) // WINDOW_MS)
        self.start_threshold = config.start_threshold or 0.5
        self.stop_threshold = config.stop_threshold or 0.5
        self.speaking = False
        self._run = 0

    def update(self, probability: float) -> str | None:
        """"start", "end" or None after one window."""
        if not self.speaking:
            self._run = self._run + 1 if probability >= self.start_threshold else 0
            if self._run >= self.start_windows:
                self.speaking, self._run = True, 0
                return "start"
            return None
        self._run = self._run + 1 if probability < self.stop_threshold else 0
        if self._run >= self.stop_windows:
            self.speaking, self._run = False, 0
            return "end"
        return None


class StreamingRecognition:
    def __init__(self, services: SpeechServices, config: GatewayConfig, *, live: bool, client: str) -> None:
        self._services = services
        self._client = client
        self._config = config
        self._live = live
        self._received = 0  # 16 kHz samples
        self._max_samples = int(config.speech.max_audio_seconds * SAMPLE_RATE)
        self._max_utterance = int(config.media.max_utterance_seconds * SAMPLE_RATE)
        self._utterance: list[FloatArray] = []
        self._utterance_samples = 0
        self._since_interim = 0
        self._pending = np.zeros(0, np.float32)  # samples not yet a whole VAD window

    @contextlib.contextmanager
    def _lane(self) -> Iterator[None]:
        if self._live:
            yield
        else:
            with batch_lane():
                yield

    async def run(self, requests: AsyncIterator[rasr.StreamingRecognizeRequest]
                  ) -> AsyncIterator[rasr.StreamingRecognizeResponse]:
        iterator = requests.__aiter__()
        first = await anext(iterator, None)
        if first is None or not first.HasField("streaming_config"):
            raise GatewayError("missing_streaming_config", "the first request must carry streaming_config")
        streaming = first.streaming_config
        config = streaming.config
        if config.encoding not in (raudio.AudioEncoding.LINEAR_PCM, raudio.AudioEncoding.ENCODING_UNSPECIFIED):
            raise GatewayError("unsupported_encoding", "StreamingRecognize takes LINEAR_PCM only")
        self._services.language(config.language_code or None)
        try:
            converter = PcmConverter(config.sample_rate_hertz or SAMPLE_RATE, config.audio_channel_count or 1)
        except AudioInputError as exc:
            raise GatewayError(exc.code, exc.message) from None
        endpointer = Endpointer(config.endpointing_config)
        with contextlib.ExitStack() as stack:
            engines = (self._services.live_engines() if self._live
                       else stack.enter_context(self._services.job(self._client)))
            vad = engines.vad.stream()
            async for request in iterator:
                if not request.audio_content:
                    continue
                samples = converter.convert(request.audio_content)
                async for response in self._feed(engines, vad, endpointer, samples, streaming.interim_results):
                    yield response
            if endpointer.speaking:  # the stream ended inside an utterance
                yield await self._decode(engines, final=True)

    async def _feed(self, engines: Engines, vad: VadStream, endpointer: Endpointer, samples: FloatArray,
                    interim: bool) -> AsyncIterator[rasr.StreamingRecognizeResponse]:
        self._received += len(samples)
        if self._received > self._max_samples:
            raise GatewayError("audio_too_long", f"the stream is longer than "
                               f"{self._config.speech.max_audio_seconds:g} s")
        audio = np.concatenate([self._pending, samples])
        size = vad.window_samples
        count = len(audio) // size
        self._pending = audio[count * size:]
        if not count:
            return
        windows = audio[: count * size].reshape(count, size)
        with self._lane():
            probabilities = await vad.probabilities(windows)
        for window, probability in zip(windows, probabilities, strict=True):
            event = endpointer.update(probability)
            self._keep(window, endpointer.speaking or event == "end")
            if event == "end" or (endpointer.speaking and self._utterance_samples >= self._max_utterance):
                endpointer.speaking = False
                # the silence that ended it is not decoded (tiny.en repeats itself over long trailing silence)
                silent = endpointer.stop_windows * size - int(TRAILING_SECONDS * SAMPLE_RATE) if event == "end" else 0
                yield await self._decode(engines, final=True, drop_samples=max(0, silent))
            elif interim and endpointer.speaking and self._since_interim >= INTERIM_SECONDS * SAMPLE_RATE:
                yield await self._decode(engines, final=False)

    def _keep(self, window: FloatArray, speaking: bool) -> None:
        self._utterance.append(window)
        self._utterance_samples += len(window)
        self._since_interim += len(window) if speaking else 0
        if not speaking:  # before speech: only the prefix is kept
            while self._utterance_samples - len(self._utterance[0]) >= PREFIX_SECONDS * SAMPLE_RATE:
                self._utterance_samples -= len(self._utterance.pop(0))

    async def _decode(self, engines: Engines, *, final: bool, drop_samples: int = 0) -> rasr.StreamingRecognizeResponse:
        audio = np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.float32)
        audio = audio[: max(0, len(audio) - drop_samples)]
        self._since_interim = 0
        if final:
            self._utterance, self._utterance_samples = [], 0
        try:
            with self._lane():
                text = (await engines.asr.transcribe(audio, partial=not final)).text.strip() if len(audio) else ""
        except EngineError as exc:
            raise EngineFailed("transcription_failed", str(exc)) from None
        result = rasr.StreamingRecognitionResult(
            alternatives=[rasr.SpeechRecognitionAlternative(transcript=text)], is_final=final,
            stability=1.0 if final else 0.5, audio_processed=self._received / SAMPLE_RATE)
        return rasr.StreamingRecognizeResponse(results=[result])
