"""Builds :class:`GatewayConfig` from defaults < TOML file < environment < CLI flags.

Every field is addressed as ``section.key`` (e.g. ``server.port``). The
environment variable for it is ``VOICE_GATEWAY_SECTION_KEY``
(``VOICE_GATEWAY_SERVER_PORT``); on the command line, ``--set server.port=9000``
or the dedicated flags (``--host``, ``--port``, ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import ConfigError, GatewayConfig

ENV_PREFIX = "VOICE_GATEWAY_"

#: Dedicated CLI flags and the key each one sets.
FLAGS: dict[str, str] = {
    "host": "server.host",
    "port": "server.port",
    "workers": "server.workers",
    "ice_servers": "server.ice_servers",
    "allow_origin": "server.allow_origins",
    "agent": "session.agent",
    "max_calls": "limits.max_calls",
    "asr_model": "engines.asr_model",
    "log_format": "logging.format",
    "log_level": "logging.level",
    "drain_timeout": "server.drain_timeout_seconds",
    "events_file": "events.file",
    "events_webhook": "events.webhook_url",
}


@dataclass(frozen=True)
class ConfigSource:
    file: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    overrides: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ConfigSource:
        overrides: dict[str, str] = {}
        for flag, key in FLAGS.items():
            value = getattr(args, flag, None)
            if value is not None:
                overrides[key] = ",".join(value) if isinstance(value, list) else str(value)
        for item in getattr(args, "set", None) or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(key, "--set takes section.key=value")
            overrides[key.strip()] = value
        return cls(file=getattr(args, "config", None), env=dict(os.environ), overrides=overrides)


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument("--host", help="address to listen on (server.host)")
    parser.add_argument("--port", type=int, help="port to listen on (server.port)")
    parser.add_argument("--workers", type=int, help="worker processes behind the port (server.workers)")
    parser.add_argument("--ice-servers", dest="ice_servers", help="comma-separated STUN/TURN URLs")
    parser.add_argument("--allow-origin", dest="allow_origin", action="append", metavar="ORIGIN",
                        help="a web origin whose pages may call the gateway (repeatable or comma-separated; "
                             "scheme://host:* for any port, * for any origin); replaces the default, localhost")
    parser.add_argument("--agent", help="default agent (session.agent)")
    parser.add_argument("--max-calls", dest="max_calls", type=int, help="concurrent call limit (limits.max_calls)")
    parser.add_argument("--asr-model", dest="asr_model", help="faster-whisper model path or name")
    parser.add_argument("--log-format", dest="log_format", choices=("text", "json"), help="logging.format")
    parser.add_argument("--log-level", dest="log_level", help="logging.level (DEBUG, INFO, WARNING, ...)")
    parser.add_argument("--drain-timeout", dest="drain_timeout", type=float,
                        help="seconds live calls may go on after SIGTERM (server.drain_timeout_seconds)")
    parser.add_argument("--events-file", dest="events_file", help="lifecycle events as JSON lines: '-', a path or ''")
    parser.add_argument("--events-webhook", dest="events_webhook", help="POST lifecycle events to this URL")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="set any configuration key")


def load_config(source: ConfigSource) -> GatewayConfig:
    values: dict[str, dict[str, Any]] = {}
    if source.file is not None:
        try:
            data = tomllib.loads(Path(source.file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError("config", f"cannot read {source.file}: {exc}") from exc
        for section, table in data.items():
            if not isinstance(table, dict):
                raise ConfigError(section, "must be a table")
            for key, value in table.items():
                _check_key(f"{section}.{key}")
                values.setdefault(section, {})[key] = value
    for section, key in _keys():
        env_name = f"{ENV_PREFIX}{section}_{key}".upper()
        if env_name in source.env:
            values.setdefault(section, {})[key] = source.env[env_name]
    for dotted, value in source.overrides.items():
        section, key = _check_key(dotted)
        values.setdefault(section, {})[key] = value
    return build_config(values)


def build_config(values: Mapping[str, Mapping[str, Any]]) -> GatewayConfig:
    sections: dict[str, Any] = {}
    hints = typing.get_type_hints(GatewayConfig)
    for section_field in dataclasses.fields(GatewayConfig):
        cls = hints[section_field.name]
        section_values = values.get(section_field.name, {})
        field_hints = typing.get_type_hints(cls)
        kwargs = {}
        for key, raw in section_values.items():
            kwargs[key] = _coerce(f"{section_field.name}.{key}", raw, field_hints[key])
        try:
            sections[section_field.name] = cls(**kwargs)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigError(section_field.name, str(exc)) from exc
    return GatewayConfig(**sections)


def to_dict(config: GatewayConfig, *, mask: tuple[str, ...] = ("api_key", "api_keys", "secret", "token", "password",
                                                       "redis_url", "nats_url")
            ) -> dict[str, Any]:
    """The effective configuration, secrets masked (for ``config show``).

    A key is secret when it is, or ends with ``_`` and, one of ``mask``
    (``webhook_token`` is; ``max_tokens`` is not).
    """
    result = dataclasses.asdict(config)
    for section in result.values():
        for key in section:
            if any(key == word or key.endswith("_" + word) for word in mask) and section[key]:
                section[key] = "***"
    return result


def _keys() -> list[tuple[str, str]]:
    hints = typing.get_type_hints(GatewayConfig)
    return [
        (section.name, f.name)
        for section in dataclasses.fields(GatewayConfig)
        for f in dataclasses.fields(hints[section.name])
    ]


def _check_key(dotted: str) -> tuple[str, str]:
    section, _, key = dotted.partition(".")
    if (section, key) not in _keys():
        raise ConfigError(dotted, "unknown configuration key")
    return section, key


def _coerce(key: str, raw: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{raw!r} is not a boolean")
        if hint is int:
            if isinstance(raw, bool):
                raise ValueError("expected an integer")
            return int(raw)
        if hint is float:
            return float(raw)
        if hint is str:
            if not isinstance(raw, (str, int, float)):
                raise ValueError("expected a string")
            return str(raw)
        if origin is tuple:
            args = typing.get_args(hint)
            if args and typing.get_origin(args[0]) is tuple:  # (name, path) pairs
                if isinstance(raw, Mapping):
                    return tuple((str(k), str(v)) for k, v in raw.items())
                pairs = [p.split("=", 1) for p in str(raw).split(",") if p.strip()]
                if any(len(p) != 2 for p in pairs):
                    raise ValueError("expected name=value pairs separated by commas")
                return tuple((p[0].strip(), p[1].strip()) for p in pairs)
            items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
            return tuple(str(item).strip() for item in items if str(item).strip())
    except (TypeError, ValueError) as exc:
        raise ConfigError(key, str(exc)) from exc
    raise ConfigError(key, f"unsupported type {hint!r}")
