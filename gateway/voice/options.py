"""How a conversation listens and talks, fixed for the life of a call (built from the configuration once)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import GatewayConfig


@dataclass(frozen=True)
class VoiceOptions:
    """Per-call knobs that ``session.update`` cannot change (those are :class:`SessionSettings`)."""

    max_utterance_seconds: float = 30.0  # an utterance this long ends the turn
    tts_ahead_seconds: float = 4.0  # synthesised audio queued ahead of playback, at most
    partial_interval_ms: int = 800  # 0: no partial transcripts
    partials_max_utilization: float = 1.0  # partials are skipped while the recogniser is busier than this
    partial_window_ms: int = 0  # a partial decodes at most this much audio since its last seam (0: all of it)
    speculative: bool = True  # decode and prepare the reply inside the silence window
    incremental_tts: bool = True  # synthesise clause by clause as the agent's text arrives
    max_history_items: int = 200  # the conversation history's bounds: beyond either, the oldest items go
    max_history_chars: int = 200_000

    def __post_init__(self) -> None:
        if self.max_utterance_seconds <= 0 or self.tts_ahead_seconds <= 0:
            raise ValueError("max_utterance_seconds and tts_ahead_seconds must be positive")
        if self.partial_interval_ms < 0 or not 0.0 <= self.partials_max_utilization <= 1.0:
            raise ValueError("partial_interval_ms must be >= 0 and partials_max_utilization within 0..1")
        if self.partial_window_ms and self.partial_window_ms < 2000:
            raise ValueError("partial_window_ms must be 0 (the whole utterance) or >= 2000")

    @classmethod
    def from_config(cls, config: GatewayConfig) -> VoiceOptions:
        return cls(
            max_utterance_seconds=config.media.max_utterance_seconds,
            tts_ahead_seconds=config.media.tts_ahead_seconds,
            partial_interval_ms=config.engines.asr_partial_interval_ms,
            partials_max_utilization=config.engines.asr_partials_max_utilization,
            partial_window_ms=config.engines.asr_partial_window_ms,
            speculative=config.pipeline.speculative_turns,
            incremental_tts=config.pipeline.incremental_tts,
            max_history_items=config.limits.max_history_items,
            max_history_chars=config.limits.max_history_chars,
        )
