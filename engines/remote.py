"""Remote ASR and TTS: another gateway's (or any Riva server's) gRPC speech services behind the engine interfaces.

``engines.remote_asr`` / ``engines.remote_tts`` = ``grpc://host:port`` (``grpcs://`` for TLS) make a gateway
send its calls' speech to those services instead of loading Whisper and Piper; the VAD stays local (it
runs every 32 ms of every call). The wire is Riva's protobufs as ``nvidia-riva-client`` ships them:

* :class:`RemoteRecognizer` — one ``Recognize`` per decode (16 kHz ``LINEAR_PCM``), the same batch
  interface as :class:`engines.whisper.WhisperRecognizer`, so the call path's streaming (partials while
  the caller speaks, the final speculatively in the pause) is unchanged. A partial the call no longer
  wants is cancelled with its task, which cancels the RPC.
* :class:`RemoteSynthesizer` — one ``SynthesizeOnline`` per clause, its audio yielded chunk by chunk as
  the server sends it; closing the iterator (barge-in) cancels the RPC.

Each request carries metadata ``x-gateway-lane`` (``final``/``partial``, ``first``/``live``) so a gateway
serving these runs them at its live priorities, not in its batch lane, and ``authorization: Bearer
KEY`` with ``engines.remote_api_key``. Every RPC has a deadline (``engines.remote_timeout_seconds``).
A lost connection, a deadline or a refusal is an :class:`~engines.errors.EngineError` (retryable unless
the request itself was refused): the call gets an ``error`` event for that turn and goes on; grpc
reconnects by itself for the next one. ``Transcript.compute_seconds`` is the RPC's round trip.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from riva.client.proto import riva_asr_pb2 as rasr
from riva.client.proto import riva_asr_pb2_grpc as rasr_grpc
from riva.client.proto import riva_audio_pb2 as raudio
from riva.client.proto import riva_tts_pb2 as rtts
from riva.client.proto import riva_tts_pb2_grpc as rtts_grpc

from engines.base import SAMPLE_RATE, FloatArray, SpeechRecognizer, SpeechSynthesizer, SynthesizedAudio, Transcript
from engines.errors import EngineError, EngineLoadError

logger = logging.getLogger(__name__)

LANE_KEY = "x-gateway-lane"
#: Piper's medium voices' rate: the remote resamples to what is asked, the local playback path is unchanged.
REMOTE_TTS_RATE = 22_050
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED})
_URL = re.compile(r"(grpcs?)://(.+):(\d{1,5})")


class RemoteChannel:
    """One grpc.aio channel to ``url``, made on first use in the running loop, closed with :meth:`close`."""

    def __init__(self, engine: str, url: str, *, api_key: str = "", ca_file: str = "", timeout: float = 10.0) -> None:
        match = _URL.fullmatch(url)
        if match is None:
            raise EngineLoadError(engine, f"remote URL {url!r} is not grpc://host:port or grpcs://host:port")
        self.engine = engine
        self.url = url
        self.target = f"{match.group(2)}:{match.group(3)}"
        self._tls = match.group(1) == "grpcs"
        self._roots = Path(ca_file).read_bytes() if ca_file else None
        self.timeout = timeout
        self._auth = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._channel: grpc.aio.Channel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def channel(self) -> grpc.aio.Channel:
        loop = asyncio.get_running_loop()
        if self._channel is None or self._loop is not loop:
            options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
            self._channel = (grpc.aio.secure_channel(self.target, grpc.ssl_channel_credentials(self._roots), options)
                             if self._tls else grpc.aio.insecure_channel(self.target, options))
            self._loop = loop
        return self._channel

    def metadata(self, lane: str) -> tuple[tuple[str, str], ...]:
        return (*self._auth, (LANE_KEY, lane))

    def error(self, exc: grpc.aio.AioRpcError) -> EngineError:
        return EngineError(self.engine, f"remote {self.url}: {exc.code().name}: {exc.details()}",
                           retryable=exc.code() in RETRYABLE)

    def close(self) -> None:
        """Close the channel (safe from any thread, and twice)."""
        channel, loop, self._channel = self._channel, self._loop, None
        if channel is None or loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            loop.create_task(channel.close())
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(channel.close(), loop).result(timeout=5)


class RemoteRecognizer(SpeechRecognizer):
    def __init__(self, url: str, *, api_key: str = "", ca_file: str = "", timeout: float = 10.0,
                 language: str = "en") -> None:
        self._remote = RemoteChannel("asr", url, api_key=api_key, ca_file=ca_file, timeout=timeout)
        self._language = f"{language or 'en'}-US" if (language or "en") == "en" else language
        self._in_flight = 0

    @property
    def queue_depth(self) -> int:
        return self._in_flight

    def close(self) -> None:
        self._remote.close()

    async def transcribe(self, audio: FloatArray, *, partial: bool = False) -> Transcript:
        started = time.perf_counter()
        pcm = (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        config = rasr.RecognitionConfig(encoding=raudio.AudioEncoding.LINEAR_PCM, sample_rate_hertz=SAMPLE_RATE,
                                        language_code=self._language, max_alternatives=1)
        stub = rasr_grpc.RivaSpeechRecognitionStub(self._remote.channel())
        self._in_flight += 1
        try:
            response = await stub.Recognize(rasr.RecognizeRequest(config=config, audio=pcm),
                                            metadata=self._remote.metadata("partial" if partial else "final"),
                                            timeout=self._remote.timeout)
        except grpc.aio.AioRpcError as exc:
            raise self._remote.error(exc) from None
        finally:
            self._in_flight -= 1
        text = " ".join(r.alternatives[0].transcript.strip() for r in response.results if r.alternatives).strip()
        return Transcript(text=text, audio_seconds=len(audio) / SAMPLE_RATE,
                          compute_seconds=time.perf_counter() - started)

    async def warm_up(self) -> None:
        """One decode, so the connection is up before the first call; a remote that is down is logged, not
        fatal (the gateway starts, its calls get ``error`` events until the remote answers)."""
        try:
            await super().warm_up()
        except EngineError as exc:
            logger.warning("remote ASR not reachable at start-up: %s", exc)


class RemoteSynthesizer(SpeechSynthesizer):
    def __init__(self, url: str, *, api_key: str = "", ca_file: str = "", timeout: float = 10.0) -> None:
        self._remote = RemoteChannel("tts", url, api_key=api_key, ca_file=ca_file, timeout=timeout)
        self.sample_rate = REMOTE_TTS_RATE
        self.voices: tuple[str, ...] = ("default",)
        self._in_flight = 0

    @property
    def queue_depth(self) -> int:
        return self._in_flight

    def close(self) -> None:
        self._remote.close()

    async def synthesize(self, text: str, *, voice: str | None = None, first: bool = False,
                         speed: float = 1.0) -> AsyncIterator[SynthesizedAudio]:
        request = rtts.SynthesizeSpeechRequest(text=text, language_code="en-US", sample_rate_hz=self.sample_rate,
                                               encoding=raudio.AudioEncoding.LINEAR_PCM,
                                               voice_name="" if voice in (None, "default") else voice)
        if speed != 1.0:
            request.custom_configuration["speed"] = str(speed)
        stub = rtts_grpc.RivaSpeechSynthesisStub(self._remote.channel())
        call: Any = stub.SynthesizeOnline(iter([request]), metadata=self._remote.metadata("first" if first else "live"),
                                          timeout=self._remote.timeout)
        self._in_flight += 1
        try:
            async for response in call:
                samples = np.frombuffer(response.audio, "<i2").astype(np.float32) / 32768.0
                if len(samples):
                    yield SynthesizedAudio(samples=samples, sample_rate=self.sample_rate)
        except grpc.aio.AioRpcError as exc:
            raise self._remote.error(exc) from None
        finally:
            self._in_flight -= 1
            call.cancel()  # a no-op once it ended; an interrupted reply stops the remote synthesis

    async def warm_up(self) -> None:
        """The remote's voices (``GetRivaSynthesisConfig``), then one clause; a remote that is down is logged."""
        stub = rtts_grpc.RivaSpeechSynthesisStub(self._remote.channel())
        try:
            config = await stub.GetRivaSynthesisConfig(rtts.RivaSynthesisConfigRequest(),
                                                       metadata=self._remote.metadata("live"),
                                                       timeout=self._remote.timeout)
            names = tuple(dict.fromkeys(m.parameters["voice_name"] for m in config.model_config
                                        if m.parameters.get("voice_name")))
            self.voices = names or self.voices
            await super().warm_up()
        except grpc.aio.AioRpcError as exc:
            logger.warning("remote TTS not reachable at start-up: %s", self._remote.error(exc))
        except EngineError as exc:
            logger.warning("remote TTS not reachable at start-up: %s", exc)
