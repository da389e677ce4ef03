"""The cluster's Redis connection: every command bounded in time, every failure a 503 ``cluster_unavailable``."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import NoReturn

import redis.asyncio as aioredis
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError, ResponseError

from gateway.config import ClusterConfig
from gateway.errors import Unavailable
from gateway.ops.redis_stream import redis_client

logger = logging.getLogger(__name__)

#: A Redis outage is logged at most once per this many seconds (each refused request is counted, not logged).
LOG_EVERY_SECONDS = 10.0
RETRY_AFTER = 2


def refused_for_now(exc: ResponseError) -> bool:
    """Whether Redis refused a command for a while, not for good: full (``maxmemory`` with ``noeviction``:
    ``OOM``), a replica after a failover (``READONLY``), or loading its data after a restart."""
    message = str(exc)  # inside a script the error comes back wrapped: match its text
    return isinstance(exc, (OutOfMemoryError, ReadOnlyError)) or any(
        marker in message for marker in ("OOM command not allowed", "READONLY", "LOADING"))


class ClusterRedis:
    """The client and the key prefix; :meth:`guard` turns Redis failures into ``503 cluster_unavailable``."""

    def __init__(self, config: ClusterConfig) -> None:
        self.client: aioredis.Redis = redis_client(config.redis_url, config.redis_timeout_seconds)
        self.prefix = config.key_prefix
        self.failures = 0  # commands that failed (connection refused, timed out)
        self.on_failure: Callable[[], None] = lambda: None  # the metric (Cluster.count_in)
        self._logged_at = -LOG_EVERY_SECONDS

    def key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    @asynccontextmanager
    async def guard(self, what: str) -> AsyncIterator[None]:
        """Run Redis commands for ``what``; a failure raises ``Unavailable("cluster_unavailable")`` (503)."""
        try:
            yield
        except ResponseError as exc:
            if not refused_for_now(exc):
                raise  # a bug (a script error), not an outage: a 500 with a traceback
            self._unavailable(what, exc)
        except (RedisError, OSError, TimeoutError) as exc:
            self._unavailable(what, exc)

    def _unavailable(self, what: str, exc: BaseException) -> NoReturn:
        self.failures += 1
        self.on_failure()
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_SECONDS:
            self._logged_at = now
            logger.warning("cluster: Redis did not answer (%s: %r); %d command(s) failed so far", what, exc,
                           self.failures)
        raise Unavailable("cluster_unavailable", f"the cluster's shared state (Redis) is unreachable: {what} "
                          "is not possible now; try again", retry_after=RETRY_AFTER) from exc

    async def close(self) -> None:
        await self.client.aclose()
