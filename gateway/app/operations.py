"""Operations wiring for an app: ``GET /metrics``, lifecycle event sinks, the event-loop lag sampler.

:func:`setup_operations` returns the one :class:`~gateway.observers.CallObserver`
the session registry tells about calls: metrics, lifecycle events, the per-turn
log line and any extra observers, fanned out in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable

from aiohttp import web

from gateway.config import GatewayConfig
from gateway.ops.lifecycle import LifecycleEvents, build_sinks
from gateway.ops.metrics import GatewayMetrics, sample_loop_lag
from gateway.ops.observers import CallObserver, CompositeObserver, TurnLog
from gateway.voice.engines import Engines

METRICS = web.AppKey("metrics", GatewayMetrics)
LIFECYCLE = web.AppKey("lifecycle_events", LifecycleEvents)

LOOP_LAG_INTERVAL = 0.25


def engine_queue_depths(engines: Engines | None) -> dict[str, int]:
    if engines is None:
        return {}
    return {"asr": engines.asr.queue_depth, "tts": engines.tts.queue_depth}


def setup_operations(app: web.Application, config: GatewayConfig, *, engines: Callable[[], Engines | None],
                     observers: Iterable[CallObserver] = ()) -> CallObserver:
    """Add ``/metrics`` and the sinks' life cycle to ``app``; returns the observer for the registry.

    Call it before the engines' ``cleanup_ctx`` is added, so that sinks close
    after the last call has ended (and its ``call.ended`` event was queued); they then get
    ``events.shutdown_flush_seconds`` to deliver what is queued (see :mod:`gateway.ops.lifecycle`).
    """
    metrics = GatewayMetrics(queue_depths=lambda: engine_queue_depths(engines()))
    sinks = build_sinks(config.events, on_drop=lambda sink: metrics.events_dropped.labels(sink).inc(),
                        on_retry=lambda sink: metrics.event_retries.labels(sink).inc(),
                        redis_url=config.cluster.redis_url, redis_timeout=config.cluster.redis_timeout_seconds)
    lifecycle = LifecycleEvents(sinks)
    app[METRICS] = metrics
    app[LIFECYCLE] = lifecycle
    app.router.add_get("/metrics", _metrics)

    async def operations_ctx(app: web.Application) -> AsyncIterator[None]:
        lifecycle.start()
        sampler = asyncio.create_task(sample_loop_lag(metrics.loop_lag.observe, LOOP_LAG_INTERVAL),
                                      name="event-loop-lag")
        yield
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        await lifecycle.close(config.events.shutdown_flush_seconds)  # what is left is counted and logged

    app.cleanup_ctx.append(operations_ctx)
    return CompositeObserver([metrics, lifecycle, TurnLog(log_transcripts=config.logging.log_transcripts),
                              *observers])


async def _metrics(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})
