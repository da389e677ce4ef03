"""The typed configuration: schema (frozen dataclasses), loader (defaults → TOML → env → flags), ``config show``."""

from gateway.config.schema import (
    AGENT_NAMES,
    AgentsConfig,
    AuthConfig,
    ConfigError,
    EngineConfig,
    EventsConfig,
    GatewayConfig,
    LOCAL_ORIGINS,
    LimitsConfig,
    LoggingConfig,
    MediaConfig,
    PipelineConfig,
    ServerConfig,
    SessionDefaults,
    TurnDetectionConfig,
)

__all__ = ["AGENT_NAMES", "AgentsConfig", "AuthConfig", "ConfigError", "EngineConfig", "EventsConfig", "GatewayConfig", "LOCAL_ORIGINS", "LimitsConfig", "LoggingConfig", "MediaConfig", "PipelineConfig", "ServerConfig", "SessionDefaults", "TurnDetectionConfig"]
