"""One instance's part in a cluster: the shared stores, the directory, the heartbeat, and their life cycle.

:class:`Cluster` is built from the configuration when ``cluster.redis_url`` is set; the app hands its stores
to signaling (``signaling_app(config, secrets=…, limits=…, mint_rate=…)``), wraps its call registry in
:meth:`Cluster.serve`, adds :attr:`Cluster.observer` to its observers and :meth:`Cluster.context` to its
cleanup contexts.

The heartbeat (every ``cluster.heartbeat_seconds``) writes this instance's calls and load; while it fails,
:attr:`Cluster.reachable` is False and ``/readyz`` answers ``503 cluster_unavailable`` (new calls need Redis:
they would get the same 503) — live calls go on untouched, and the next heartbeat that gets through writes
everything again. At shutdown, after the calls were closed, the instance withdraws its entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from gateway.aio import TaskSet
from gateway.cluster.calls import ClusterCalls
from gateway.cluster.directory import CallDirectory
from gateway.cluster.limits import RedisLimits, RedisMintRate
from gateway.cluster.redis import ClusterRedis
from gateway.cluster.secrets import RedisSecrets
from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.ops.metrics import GatewayMetrics
from gateway.ops.observers import CallObserver
from signaling.service import CallService

logger = logging.getLogger(__name__)

LoadReport = Callable[[], dict[str, Any]]
#: Calls without a duration limit (``limits.max_call_seconds = 0``) count against their client this long at most.
LONGEST_CALL_SECONDS = 24 * 3600.0


def instance_url(config: GatewayConfig) -> str:
    """``cluster.instance_url``, or this process's own address (``server.host``/``port``)."""
    if config.cluster.instance_url:
        return config.cluster.instance_url
    host = config.server.host
    return f"http://[{host}]:{config.server.port}" if ":" in host else f"http://{host}:{config.server.port}"


class _DirectoryObserver(CallObserver):
    """Deletes an ended call's directory entry at once (the heartbeat would, a beat later)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def call_ended(self, call_id: str, reason: str, duration_s: float, turns: int) -> None:
        self._cluster.forget_soon(call_id)


class Cluster:
    """See the module doc."""

    def __init__(self, config: GatewayConfig) -> None:
        settings = config.cluster
        self.config = settings
        self.redis = ClusterRedis(settings)
        self.instance_id = settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        longest = config.limits.max_call_seconds or LONGEST_CALL_SECONDS
        self.secrets = RedisSecrets(self.redis, per_client=config.limits.max_client_secrets_per_client)
        self.limits = RedisLimits(self.redis, config.limits, call_ttl_seconds=longest + settings.lease_seconds)
        self.mint_rate = RedisMintRate(self.redis, config.limits)
        self.directory = CallDirectory(self.redis, instance_id=self.instance_id, instance_url=instance_url(config),
                                       lease_seconds=settings.lease_seconds, max_calls=config.limits.max_calls)
        self.observer: CallObserver = _DirectoryObserver(self)
        self.reachable = False  # the last heartbeat got through
        self.calls: ClusterCalls | None = None
        self._report: LoadReport = dict
        self._on_forward: Callable[[], None] = lambda: None
        self._tasks = TaskSet("cluster")

    def serve(self, local: CallService, report: LoadReport) -> ClusterCalls:
        """The call service signaling should use: ``local``'s calls plus forwarded hang-ups; ``report`` is what
        the heartbeat publishes (``SessionRegistry.load_report``)."""
        self._report = report
        self.calls = ClusterCalls(local, self.directory, internal_token=self.config.internal_token)
        self.calls.on_forward = self._on_forward
        return self.calls

    def count_in(self, metrics: GatewayMetrics) -> None:
        """Count Redis failures and forwarded hang-ups in ``metrics``, and show whether Redis answers."""
        self.redis.on_failure = metrics.cluster_redis_failures.inc
        self._on_forward = metrics.cluster_hangups_forwarded.inc
        if self.calls is not None:
            self.calls.on_forward = self._on_forward
        metrics.cluster_reachable.set_function(lambda: float(self.reachable))
        metrics.registry.register(metrics.cluster_reachable)

    def forget_soon(self, call_id: str) -> None:
        if not self._tasks.closed:
            self._tasks.create_task(self._forget(call_id), name=f"cluster-forget-{call_id}")

    async def _forget(self, call_id: str) -> None:
        with contextlib.suppress(GatewayError):  # logged by the guard; the entry then expires with its lease
            await self.directory.forget(call_id)

    async def beat(self) -> bool:
        """One heartbeat; whether it got through."""
        try:
            await self.directory.heartbeat(self._report())
        except GatewayError:
            if self.reachable:
                logger.warning("cluster: heartbeat failed: instance %s is not taking calls until Redis answers "
                               "(live calls go on)", self.instance_id)
            self.reachable = False
        else:
            if not self.reachable:
                logger.info("cluster: instance %s (%s) joined through Redis", self.instance_id,
                            self.directory.instance_url)
            self.reachable = True
        return self.reachable

    async def _heartbeats(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.config.heartbeat_seconds)

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """Cleanup context: heartbeats while the app runs; at the end (after the calls closed) withdraw."""
        beats = asyncio.create_task(self._heartbeats(), name=f"cluster-heartbeat-{self.instance_id}")
        yield
        beats.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beats
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain_forgets(), self.config.lease_seconds)
        await self._tasks.close()
        with contextlib.suppress(GatewayError):
            await self.directory.withdraw()
        if self.calls is not None:
            await self.calls.close()
        await self.redis.close()

    async def _drain_forgets(self) -> None:
        while len(self._tasks):  # noqa: ASYNC110 - the task set has no "emptied" signal
            await asyncio.sleep(0.01)
