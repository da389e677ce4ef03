"""``[events]``: where call lifecycle events go (a file, a webhook, a Redis stream, NATS JetStream)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.cluster import REDIS_SCHEMES
from gateway.config.errors import require as _require


@dataclass(frozen=True)
class EventsConfig:
    """Call lifecycle events (``call.started``, ``turn.completed``, ``call.ended``) for other systems."""

    file: str = "-"  # JSON lines: "-" for stdout, a path to append to, "" for none
    webhook_url: str = ""  # POST each event as JSON to this http(s) URL; "" for none
    webhook_token: str = ""  # sent as "Authorization: Bearer ..." (a secret: masked by config show)
    webhook_timeout_seconds: float = 5.0  # one attempt
    webhook_retries: int = 3  # with backoff 0.5 s, 1 s, 2 s ... (at most 5 s)
    webhook_event_timeout_seconds: float = 15.0  # every attempt at one event, backoff included
    queue_size: int = 1000  # events waiting for a sink; beyond it new events are dropped (and counted)
    # XADD each event to this Redis stream (gateway/ops/redis_stream.py); "" for none. Redis: events.redis_url,
    # or cluster.redis_url when that is empty. The stream keeps about redis_stream_maxlen entries (MAXLEN ~).
    redis_stream: str = ""
    redis_url: str = ""  # a secret when it holds a password: masked by config show
    redis_stream_maxlen: int = 100_000
    nats_url: str = ""  # publish each event to NATS JetStream (gateway/ops/nats_stream.py); "" for none
    nats_subject: str = "voice-gateway.events"  # a JetStream stream must hold it (created when none does)
    # At shutdown the sinks deliver what they can this long; what is left is counted and logged, one line an event.
    shutdown_flush_seconds: float = 10.0

    def __post_init__(self) -> None:
        _require(self.webhook_url == "" or self.webhook_url.startswith(("http://", "https://")),
                 "events.webhook_url", "must be an http:// or https:// URL")
        _require(0.1 <= self.webhook_timeout_seconds <= 60, "events.webhook_timeout_seconds", "must be 0.1..60")
        _require(0 <= self.webhook_retries <= 10, "events.webhook_retries", "must be 0..10")
        _require(0.1 <= self.webhook_event_timeout_seconds <= 600, "events.webhook_event_timeout_seconds",
                 "must be 0.1..600")
        _require(0 <= self.shutdown_flush_seconds <= 600, "events.shutdown_flush_seconds", "must be 0..600")
        _require(1 <= self.queue_size <= 100_000, "events.queue_size", "must be 1..100000")
        _require(self.redis_url == "" or self.redis_url.startswith(REDIS_SCHEMES), "events.redis_url",
                 "must be a redis://, rediss:// or unix:// URL")
        _require(1000 <= self.redis_stream_maxlen <= 100_000_000, "events.redis_stream_maxlen",
                 "must be 1000..100000000")
        _require(self.nats_url == "" or self.nats_url.startswith(("nats://", "tls://")), "events.nats_url",
                 "must be a nats:// or tls:// URL")
