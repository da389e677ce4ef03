"""The loaded engines and agents every call shares (built by :mod:`gateway.app.engines`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engines import SpeechRecognizer, SpeechSynthesizer, VoiceActivityDetector
from engines.base import EndOfTurnModel
from engines.echo import EchoCancellers
from gateway.agents.registry import AgentRegistry


@dataclass
class Engines:
    vad: VoiceActivityDetector
    asr: SpeechRecognizer
    tts: SpeechSynthesizer
    agents: AgentRegistry
    end_of_turn: EndOfTurnModel | None = None  # semantic_vad's model (Smart Turn); None: semantic_vad ends at the cap
    echo: EchoCancellers = field(default_factory=EchoCancellers)  # turn_detection.gateway.echo_cancellation

    def close(self) -> None:
        for engine in (self.vad, self.asr, self.tts, self.end_of_turn, self.echo):
            close = getattr(engine, "close", None)
            if close is not None:
                close()
        self.agents.close()
