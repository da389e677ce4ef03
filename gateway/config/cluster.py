"""``[cluster]``: several instances sharing state in Redis (gateway/cluster/, docs/deployment.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.config.errors import require as _require

#: The URL schemes redis-py connects with (``cluster.redis_url``, ``events.redis_url``).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


@dataclass(frozen=True)
class ClusterConfig:
    """Several instances sharing state in Redis (gateway/cluster/, docs/deployment.md); off without ``redis_url``.

    With it: client secrets, per-client call limits and a call directory (call id → instance) live in Redis, so
    any instance takes a token minted on another, counts an address's calls in the whole cluster, and forwards a
    hang-up to the instance holding the call (HTTP with ``internal_token``).
    """

    redis_url: str = ""  # redis://host:6379/0 (a secret when it holds a password: masked by config show)
    # How the other instances reach this one's HTTP port (forwarded hang-ups): http://10.0.0.7:8080.
    # "" = http://server.host:server.port (not allowed when server.host is a wildcard address).
    instance_url: str = ""
    instance_id: str = ""  # "" = host name and process id
    internal_token: str = field(default="", repr=False)  # shared by every instance (a secret, >= 16 characters)
    key_prefix: str = "vg:"  # every key the gateway writes starts with it
    heartbeat_seconds: float = 2.0  # how often this instance's calls and load are written again
    lease_seconds: float = 10.0  # entries of an instance that stopped writing them expire after this
    redis_timeout_seconds: float = 0.5  # one Redis command; beyond it the request gets 503 cluster_unavailable

    def __post_init__(self) -> None:
        _require(self.redis_url == "" or self.redis_url.startswith(REDIS_SCHEMES), "cluster.redis_url",
                 "must be a redis://, rediss:// or unix:// URL")
        _require(self.instance_url == "" or self.instance_url.startswith(("http://", "https://")),
                 "cluster.instance_url", "must be an http:// or https:// URL")
        _require(not self.redis_url or len(self.internal_token) >= 16, "cluster.internal_token",
                 "must be at least 16 characters when cluster.redis_url is set (instances forward hang-ups with it)")
        _require(bool(re.fullmatch(r"[A-Za-z0-9_:{}.-]{1,64}", self.key_prefix)), "cluster.key_prefix",
                 "must be 1..64 of A-Z a-z 0-9 _ : { } . -")
        _require(0.2 <= self.heartbeat_seconds <= 60, "cluster.heartbeat_seconds", "must be 0.2..60")
        _require(self.lease_seconds >= 2 * self.heartbeat_seconds and self.lease_seconds <= 600,
                 "cluster.lease_seconds", "must be at least 2 heartbeats and at most 600")
        _require(0.05 <= self.redis_timeout_seconds <= 10, "cluster.redis_timeout_seconds", "must be 0.05..10")
