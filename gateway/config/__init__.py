"""The typed configuration: schema (frozen dataclasses), loader (defaults → TOML → env → flags), ``config show``."""

from gateway.config.admission import AdmissionConfig
from gateway.config.cluster import ClusterConfig
from gateway.config.errors import ConfigError
from gateway.config.events import EventsConfig
from gateway.config.schema import (
    AGENT_NAMES,
    LOCAL_ORIGINS,
    AgentsConfig,
    AuthConfig,
    EngineConfig,
    GatewayConfig,
    LimitsConfig,
    LoggingConfig,
    MediaConfig,
    PipelineConfig,
    ServerConfig,
    SessionDefaults,
    TurnDetectionConfig,
)
from gateway.config.speech import SpeechConfig
from gateway.config.telephony import TelephonyConfig

__all__ = [
    "AGENT_NAMES",
    "LOCAL_ORIGINS",
    "AdmissionConfig",
    "AgentsConfig",
    "AuthConfig",
    "ClusterConfig",
    "ConfigError",
    "EngineConfig",
    "EventsConfig",
    "GatewayConfig",
    "LimitsConfig",
    "LoggingConfig",
    "MediaConfig",
    "PipelineConfig",
    "ServerConfig",
    "SessionDefaults",
    "SpeechConfig",
    "TelephonyConfig",
    "TurnDetectionConfig",
]
