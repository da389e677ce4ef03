"""What the speech services serve: model names and voices, OpenAI's names mapped to the local ones.

Models: OpenAI's transcription models (``whisper-1``, ``gpt-4o-transcribe``, ``gpt-4o-mini-transcribe``)
all mean the gateway's recogniser, its speech models (``tts-1``, ``tts-1-hd``, ``gpt-4o-mini-tts``) its
synthesiser; ``voice-gateway-asr`` / ``voice-gateway-tts`` name them natively. An empty model is
accepted; any other name is ``400 model_not_found``.

Voices: a configured voice by its own name, or one of OpenAI's :data:`OPENAI_VOICES` through
``speech.voice_map`` (name → configured voice); OpenAI names the map leaves out get the first
configured voice. Anything else is ``400 unknown_voice``.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.errors import GatewayError
from signaling.speech_service import ModelInfo

TRANSCRIPTION_MODELS = ("voice-gateway-asr", "whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
SPEECH_MODELS = ("voice-gateway-tts", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
                 "marin", "cedar")


def models() -> list[ModelInfo]:
    return [*(ModelInfo(m, "transcription") for m in TRANSCRIPTION_MODELS),
            *(ModelInfo(m, "speech") for m in SPEECH_MODELS)]


def check_model(model: str, kind: str) -> None:
    known = TRANSCRIPTION_MODELS if kind == "transcription" else SPEECH_MODELS
    if model and model not in known:
        raise GatewayError("model_not_found", f"unknown {kind} model {model!r}; served: {', '.join(known)}")


class VoiceMap:
    def __init__(self, mapping: Iterable[tuple[str, str]]) -> None:
        self._mapping = dict(mapping)

    def resolve(self, voice: str, available: tuple[str, ...]) -> str:
        """The configured voice ``voice`` names (its own name, or an OpenAI name mapped to it)."""
        if voice in available:
            return voice
        if voice in OPENAI_VOICES:
            mapped = self._mapping.get(voice, available[0])
            if mapped in available:
                return mapped
        raise GatewayError("unknown_voice", f"unknown voice {voice!r}; use one of "
                           f"{', '.join(available)} or an OpenAI voice name ({', '.join(OPENAI_VOICES)})")
