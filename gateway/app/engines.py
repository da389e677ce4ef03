"""Loading the engines and agents every call shares, from the configuration."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from engines import SpeechRecognizer, SpeechSynthesizer
from gateway.agents.factories import agent_factories
from gateway.agents.registry import AgentRegistry
from gateway.config import GatewayConfig
from gateway.voice.engines import Engines

logger = logging.getLogger(__name__)


def default_agents(config: GatewayConfig) -> AgentRegistry:
    """The agents ``config`` enables (blocking when it starts the local LLM server)."""
    factories, close = agent_factories(config)
    return AgentRegistry(factories, on_close=close)


def load_engines(config: GatewayConfig) -> Engines:
    """Load every model (blocking: call it in an executor)."""
    from engines.phrase_cache import PhraseCache
    from engines.piper_tts import PiperSynthesizer
    from engines.remote import RemoteRecognizer, RemoteSynthesizer
    from engines.silero import SileroVad
    from engines.smart_turn import SmartTurn
    from engines.threads import limit_blas_threads
    from engines.whisper import WhisperRecognizer

    started = time.perf_counter()
    cfg = config.engines
    if cfg.blas_threads:
        limit_blas_threads(cfg.blas_threads)
    vad = SileroVad(batching=cfg.vad_batching)
    asr: SpeechRecognizer
    tts: SpeechSynthesizer
    key, ca, timeout = cfg.remote_api_key, cfg.remote_ca_file, cfg.remote_timeout_seconds
    if cfg.remote_asr:  # another instance's gRPC services (engines/remote.py), no local Whisper
        asr = RemoteRecognizer(cfg.remote_asr, api_key=key, ca_file=ca, timeout=timeout, language=cfg.asr_language)
    else:
        asr = WhisperRecognizer(
            cfg.asr_model or None,
            device=cfg.device,
            compute_type=cfg.whisper_compute_type,
            batching=cfg.asr_batching,
            cpu_threads=cfg.asr_threads,
            language=cfg.asr_language or None,
            fitted_window=cfg.asr_fitted_window,
            partial_min_window_ms=cfg.asr_partial_min_window_ms,
        )
    if cfg.remote_tts:
        tts = RemoteSynthesizer(cfg.remote_tts, api_key=key, ca_file=ca, timeout=timeout)
    else:
        voices = {name: Path(path) for name, path in cfg.tts_voices} or None
        tts = PiperSynthesizer(voices, threads=cfg.tts_threads, intra_threads=cfg.tts_intra_threads, device=cfg.device)
    if cfg.tts_phrase_cache_bytes:
        tts = PhraseCache(tts, max_bytes=cfg.tts_phrase_cache_bytes)
    end_of_turn = SmartTurn()  # semantic_vad; the ONNX file comes with the pipecat-ai wheel (installed --no-deps)
    logger.info("engines loaded in %.1f s", time.perf_counter() - started)
    return Engines(vad=vad, asr=asr, tts=tts, agents=default_agents(config), end_of_turn=end_of_turn)


async def warm_up(engines: Engines) -> None:
    """Run every model once so the first call pays no start-up cost."""
    started = time.perf_counter()
    warm = [engines.vad.warm_up(), engines.asr.warm_up(), engines.tts.warm_up()]
    if engines.end_of_turn is not None:
        warm.append(engines.end_of_turn.warm_up())
    await asyncio.gather(*warm)
    logger.info("engines warmed up in %.1f s", time.perf_counter() - started)
