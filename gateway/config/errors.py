"""The one configuration error, and the check every section's ``__post_init__`` makes with it."""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid configuration value; ``key`` names it (dotted)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def require(condition: bool, key: str, message: str) -> None:
    """Raise :class:`ConfigError` for ``key`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(key, message)
