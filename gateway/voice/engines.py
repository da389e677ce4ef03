"""The loaded engines and agents every call shares (built by :mod:`gateway.app.engines`)."""

from __future__ import annotations

from dataclasses import dataclass

from engines import SpeechRecognizer, SpeechSynthesizer, VoiceActivityDetector
from engines.base import EndOfTurnModel
from gateway.agents.registry import AgentRegistry


@dataclass
class Engines:
    vad: VoiceActivityDetector
    asr: SpeechRecognizer
    tts: SpeechSynthesizer
    agents: AgentRegistry
    end_of_turn: EndOfTurnModel | None = None  # semantic_vad's model (Smart Turn); None: semantic_vad ends at the cap

    def close(self) -> None:
        for engine in (self.vad, self.asr, self.tts, self.end_of_turn):
            close = getattr(engine, "close", None)
            if close is not None:
                close()
        self.agents.close()
