"""What the speech endpoints need from the gateway: transcribe an upload, speak a text, list the models.

Like :mod:`signaling.service` for calls: signaling parses and validates HTTP into these typed requests
and maps the :class:`~gateway.errors.GatewayError` the service raises to JSON. The implementation is
:class:`gateway.speech.service.SpeechServices`; signaling never imports it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web


@dataclass(frozen=True)
class TranscriptionRequest:
    audio: bytes  # the uploaded file, any format av decodes
    model: str
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0


@dataclass(frozen=True)
class TranscriptSegment:
    """One decoded stretch of speech: where it is in the upload (seconds) and what was said."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class TranscriptionStart:
    """What is known once the upload is decoded, before any text: its duration and language."""

    duration: float
    language: str


@dataclass(frozen=True)
class SpeechRequest:
    input: str
    voice: str  # an OpenAI voice name or a configured voice
    model: str
    response_format: str = "mp3"
    speed: float = 1.0


@dataclass(frozen=True)
class ModelInfo:
    id: str
    kind: str  # "transcription" or "speech"


@dataclass(frozen=True)
class SpeechStream:
    mime_type: str
    chunks: AsyncGenerator[bytes, None]  # the encoded audio, clause by clause


#: What ``transcribe`` returns: the start (duration, language), then the segments as they are decoded.
Transcription = tuple[TranscriptionStart, AsyncGenerator[TranscriptSegment, None]]


class SpeechService(Protocol):
    def models(self) -> list[ModelInfo]:
        """What is served (an empty list while the engines load)."""
        ...

    async def transcribe(self, request: TranscriptionRequest) -> Transcription:
        """Admit and decode the upload (raising GatewayError: invalid_audio, audio_too_long, capacity ...),
        then the segments as they are transcribed."""
        ...

    async def synthesize(self, request: SpeechRequest) -> SpeechStream:
        """Admit and check the request (unknown voice, bad format: GatewayError), then stream its audio."""
        ...


#: The app's speech service.
SPEECH = web.AppKey("speech_service", SpeechService)
