"""The typed configuration: schema (frozen dataclasses), loader (defaults → TOML → env → flags), ``config show``."""

from gateway.config.base import ConfigError
from gateway.config.cluster import ClusterConfig
from gateway.config.schema import (
    AGENT_NAMES,
    LOCAL_ORIGINS,
    AgentsConfig,
    AuthConfig,
    EngineConfig,
    EventsConfig,
    GatewayConfig,
    LimitsConfig,
    LoggingConfig,
    MediaConfig,
    PipelineConfig,
    ServerConfig,
    SessionDefaults,
    TurnDetectionConfig,
)

__all__ = [
    "AGENT_NAMES",
    "LOCAL_ORIGINS",
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
    "TurnDetectionConfig",
]
