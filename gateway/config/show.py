"""``voice-gateway config show``: the effective configuration as TOML or JSON, secrets masked.

The TOML it prints is a valid ``--config`` file (with the secrets' ``"***"`` to replace).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from gateway.config import GatewayConfig
from gateway.config.loader import to_dict


def effective_config(config: GatewayConfig) -> dict[str, dict[str, Any]]:
    """Sections of plain values: lists for tuples, tables for (name, value) pairs."""
    data = to_dict(config)
    for section in dataclasses.fields(config):
        hints = typing.get_type_hints(type(getattr(config, section.name)))
        values = data[section.name]
        for key, value in values.items():
            if isinstance(value, tuple):
                args = typing.get_args(hints[key])
                pairs = bool(args) and typing.get_origin(args[0]) is tuple
                values[key] = {str(k): v for k, v in value} if pairs else list(value)
    return data


def render_config(config: GatewayConfig, fmt: str = "toml") -> str:
    data = effective_config(config)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt != "toml":
        raise ValueError(f"unknown format {fmt!r}")
    lines: list[str] = []
    for section, values in data.items():
        if lines:
            lines.append("")
        lines.append(f"[{section}]")
        lines.extend(f"{_key(key)} = {_toml(value)}" for key, value in values.items())
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + " }" if value else "{}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")
