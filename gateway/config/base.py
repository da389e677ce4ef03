"""What every configuration section uses: the error type and the check that raises it."""

from __future__ import annotations


class ConfigError(ValueError):
    """An invalid configuration value; ``key`` names it (dotted)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(key, message)


#: The URL schemes redis-py connects with (``cluster.redis_url``, ``events.redis_url``).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
