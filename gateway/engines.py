"""The loaded engines and agents shared by every call."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engines import SpeechRecognizer, SpeechSynthesizer, VoiceActivityDetector
from gateway.agents import Agent
from gateway.agents.factories import agent_factories
from gateway.config import GatewayConfig

logger = logging.getLogger(__name__)

AgentFactory = Callable[[], Agent]


class AgentRegistry:
    """The agents this server allows, by name."""

    def __init__(self, factories: dict[str, AgentFactory], *, on_close: Callable[[], None] | None = None) -> None:
        if not factories:
            raise ValueError("at least one agent is required")
        self._factories = dict(factories)
        self._on_close = on_close

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._factories)

    def create(self, name: str, *, call_id: str = "") -> Agent:
        factory = self._factories.get(name)
        if factory is None:
            raise KeyError(name)
        agent = factory()
        agent.call_id = call_id
        return agent

    def close(self) -> None:
        """Free what the agents hold (e.g. stop the local LLM server). Safe to call more than once."""
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()


@dataclass
class Engines:
    vad: VoiceActivityDetector
    asr: SpeechRecognizer
    tts: SpeechSynthesizer
    agents: AgentRegistry

    def close(self) -> None:
        for engine in (self.vad, self.asr, self.tts):
            close = getattr(engine, "close", None)
            if close is not None:
                close()
        self.agents.close()


def default_agents(config: GatewayConfig) -> AgentRegistry:
    """The agents ``config`` enables (blocking when it starts the local LLM server)."""
    factories, close = agent_factories(config)
    return AgentRegistry(factories, on_close=close)


def load_engines(config: GatewayConfig) -> Engines:
    """Load every model (blocking: call it in an executor)."""
    from engines.piper_tts import PiperSynthesizer
    from engines.silero import SileroVad
    from engines.threads import limit_blas_threads
    from engines.whisper import WhisperRecognizer

    started = time.perf_counter()
    cfg = config.engines
    if cfg.blas_threads:
        limit_blas_threads(cfg.blas_threads)
    vad = SileroVad()
    asr = WhisperRecognizer(
        cfg.asr_model or None,
        device=cfg.asr_device,
        compute_type=cfg.asr_compute_type,
        cpu_threads=cfg.asr_threads,
        language=cfg.asr_language or None,
        fitted_window=cfg.asr_fitted_window,
    )
    voices = {name: Path(path) for name, path in cfg.tts_voices} or None
    tts = PiperSynthesizer(voices, threads=cfg.tts_threads, intra_threads=cfg.tts_intra_threads)
    logger.info("engines loaded in %.1f s", time.perf_counter() - started)
    return Engines(vad=vad, asr=asr, tts=tts, agents=default_agents(config))


async def warm_up(engines: Engines) -> None:
    """Run every model once so the first call pays no start-up cost."""
    started = time.perf_counter()
    await asyncio.gather(engines.vad.warm_up(), engines.asr.warm_up(), engines.tts.warm_up())
    logger.info("engines warmed up in %.1f s", time.perf_counter() - started)
