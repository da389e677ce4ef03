"""The Redis stream sink of lifecycle events (gateway/ops/redis_stream.py) on a real redis-server."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from gateway.config import EventsConfig
from gateway.ops.lifecycle import LifecycleEvents, build_sinks
from gateway.ops.metrics import GatewayMetrics
from gateway.ops.observers import TurnReport
from tests.cluster.conftest import RedisServer
from tests.support.ops import Scrape

STREAM = "test:events"
DROPPED = "voice_gateway_lifecycle_events_dropped_total"
RETRIES = "voice_gateway_lifecycle_event_retries_total"


def lifecycle(redis_url: str, metrics: GatewayMetrics, **events: Any) -> LifecycleEvents:
    config = EventsConfig(file="", redis_stream=STREAM, redis_url=redis_url, **events)
    sinks = build_sinks(config, on_drop=lambda sink: metrics.events_dropped.labels(sink).inc(),
                        on_retry=lambda sink: metrics.event_retries.labels(sink).inc(), retry_delay=0.05,
                        redis_timeout=0.2)
    return LifecycleEvents(sinks)


async def stream(redis_url: str) -> list[dict[str, Any]]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        entries = await client.xrange(STREAM)
    finally:
        await client.aclose()
    events = []
    for _, fields in entries:
        event = json.loads(fields[b"event"])
        assert fields[b"type"].decode() == event["type"]
        events.append(event)
    return events


async def until_in_stream(redis_url: str, count: int, within: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while len(found := await stream(redis_url)) < count:
        assert time.monotonic() < deadline, f"{len(found)} of {count} events in the stream"
        await asyncio.sleep(0.05)
    return found


def report() -> TurnReport:
    return TurnReport("item_1", "resp_1", True, {"asr_final": 120.0}, 80.0, 40.0, 1500.0, transcript="secret")


async def test_events_are_appended_with_their_fields_and_no_user_data(redis_url: str) -> None:
    events = lifecycle(redis_url, GatewayMetrics())
    events.start()
    events.call_started("rtc_1")
    events.turn_completed("rtc_1", report())
    events.call_ended("rtc_1", "hangup", 3.2, 1)
    found = await until_in_stream(redis_url, 3)
    assert [e["type"] for e in found] == ["call.started", "turn.completed", "call.ended"]
    assert found[1]["latency_ms"] == {"asr_final": 120.0} and "secret" not in json.dumps(found)
    assert found[2]["reason"] == "hangup"
    await events.close(1.0)


async def test_events_wait_while_redis_is_down_and_arrive_after_it_returns(
        redis_url: str, redis_server: RedisServer) -> None:
    metrics = GatewayMetrics()
    events = lifecycle(redis_url, metrics)
    events.start()
    redis_server.stop()
    for i in range(30):
        events.call_started(f"rtc_{i}")
    await asyncio.sleep(0.5)  # attempts fail and back off meanwhile
    assert Scrape(metrics.render().decode()).value(RETRIES, sink="redis_stream") >= 2
    redis_server.start()
    found = await until_in_stream(redis_url, 30)
    assert [e["call_id"] for e in found] == [f"rtc_{i}" for i in range(30)]  # all, in order
    assert Scrape(metrics.render().decode()).value(DROPPED, sink="redis_stream") == 0
    await events.close(1.0)


async def test_a_full_buffer_drops_new_events_and_counts_each(redis_url: str, redis_server: RedisServer,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    metrics = GatewayMetrics()
    events = lifecycle(redis_url, metrics, queue_size=5)
    events.start()
    redis_server.stop()
    events.call_started("rtc_first")
    await asyncio.sleep(0.3)  # the delivery task holds the first event and retries it
    with caplog.at_level(logging.WARNING, logger="gateway.ops.lifecycle"):
        for i in range(20):
            events.call_started(f"rtc_{i}")
    dropped = Scrape(metrics.render().decode()).value(DROPPED, sink="redis_stream")
    assert dropped == 15  # five wait in the buffer
    assert any("dropped" in record.getMessage() for record in caplog.records)
    redis_server.start()
    found = await until_in_stream(redis_url, 6)
    assert [e["call_id"] for e in found] == ["rtc_first", *(f"rtc_{i}" for i in range(5))]
    await events.close(1.0)


async def test_shutdown_drains_the_buffer_and_counts_what_redis_never_took(
        redis_url: str, redis_server: RedisServer) -> None:
    events = lifecycle(redis_url, GatewayMetrics())
    events.start()
    for i in range(250):
        events.call_ended(f"rtc_{i}", "shutdown", 1.0, 0)
    await events.close(5.0)
    assert len(await stream(redis_url)) == 250  # all of them before close returned
    metrics = GatewayMetrics()
    events = lifecycle(redis_url, metrics)
    events.start()
    redis_server.stop()
    for i in range(10):
        events.call_ended(f"rtc_late_{i}", "shutdown", 1.0, 0)
    started = time.monotonic()
    await events.close(1.0)
    assert time.monotonic() - started < 3  # the shutdown budget, not a hang
    assert Scrape(metrics.render().decode()).value(DROPPED, sink="redis_stream") == 10
