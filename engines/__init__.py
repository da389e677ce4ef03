"""Speech engines (VAD, ASR, TTS) behind small async interfaces.

This package knows nothing about calls, HTTP or WebRTC: it turns 16 kHz mono
float32 PCM into speech probabilities and transcripts, and text into PCM.
One loaded model is shared by every call; inference runs in executors.
"""

from engines.base import (
    SpeechRecognizer,
    SpeechSynthesizer,
    SynthesizedAudio,
    Transcript,
    VadStream,
    VoiceActivityDetector,
)
from engines.errors import EngineError

__all__ = [
    "EngineError",
    "SpeechRecognizer",
    "SpeechSynthesizer",
    "SynthesizedAudio",
    "Transcript",
    "VadStream",
    "VoiceActivityDetector",
]
