"""Lifecycle event sinks: JSON lines, and a webhook that retries, gives up and drops without blocking."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config import EventsConfig
from gateway.ops.lifecycle import JsonLinesSink, LifecycleEvents, WebhookSink, build_sinks
from gateway.ops.metrics import GatewayMetrics
from gateway.ops.observers import TURN_STAGES, TurnReport
from tests.support.ops import free_port

AiohttpServer = Callable[[web.Application], Awaitable[TestServer]]

REPORT = TurnReport(item_id="item_1", response_id="resp_1", speculative=False,
                    latency_ms=dict.fromkeys(TURN_STAGES, 80.0), overhead_ms=10.0, asr_compute_ms=40.0,
                    audio_ms=1200, transcript="secret words")


def dead_url() -> str:
    """A local port nobody listens on: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}/events"


async def test_the_three_events_have_their_fields_and_no_transcript(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    lifecycle = LifecycleEvents([JsonLinesSink(str(path))])
    lifecycle.start()
    lifecycle.call_started("rtc_1")
    lifecycle.turn_completed("rtc_1", REPORT)
    lifecycle.call_ended("rtc_1", "hangup", 12.34567, 1)
    await lifecycle.close()
    started, turn, ended = [json.loads(line) for line in path.read_text().splitlines()]
    assert [started["type"], turn["type"], ended["type"]] == ["call.started", "turn.completed", "call.ended"]
    for event in (started, turn, ended):
        assert event["call_id"] == "rtc_1" and event["id"].startswith("evt_") and event["time"].endswith("Z")
    assert turn["latency_ms"] == dict.fromkeys(TURN_STAGES, 80.0)
    assert (turn["item_id"], turn["response_id"], turn["overhead_ms"]) == ("item_1", "resp_1", 10.0)
    assert "secret" not in path.read_text()
    assert (ended["reason"], ended["duration_s"], ended["turns"]) == ("hangup", 12.346, 1)


async def test_the_webhook_retries_server_errors_then_delivers(aiohttp_server: AiohttpServer) -> None:
    received: list[dict[str, object]] = []
    answers = [503, 500, 200]

    async def hook(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer s3cret"
        received.append(await request.json())
        return web.Response(status=answers.pop(0))

    app = web.Application()
    app.router.add_post("/events", hook)
    server = await aiohttp_server(app)
    sink = WebhookSink(str(server.make_url("/events")), token="s3cret", retries=3, retry_delay=0.01)
    sink.start()
    sink.publish({"type": "call.started", "call_id": "rtc_1"})
    await sink.close()
    assert (sink.delivered, sink.retried, sink.dropped) == (1, 2, 0)
    assert len(received) == 3


async def test_a_refused_event_is_not_retried(aiohttp_server: AiohttpServer) -> None:
    async def hook(request: web.Request) -> web.Response:
        return web.Response(status=400)

    app = web.Application()
    app.router.add_post("/events", hook)
    server = await aiohttp_server(app)
    sink = WebhookSink(str(server.make_url("/events")), retries=3, retry_delay=0.01)
    sink.start()
    sink.publish({"type": "call.started"})
    await sink.close()
    assert (sink.delivered, sink.retried, sink.dropped) == (0, 0, 1)


async def test_a_dead_endpoint_is_retried_then_dropped_and_counted() -> None:
    metrics = GatewayMetrics()
    config = EventsConfig(file="", webhook_url=dead_url(), webhook_retries=2)
    [sink] = build_sinks(config, on_drop=lambda name: metrics.events_dropped.labels(name).inc(),
                         on_retry=lambda name: metrics.event_retries.labels(name).inc(), retry_delay=0.01)
    assert isinstance(sink, WebhookSink)
    sink.start()
    for n in range(3):
        sink.publish({"type": "call.started", "call_id": f"rtc_{n}"})
    await sink.close(grace_s=10)
    assert (sink.delivered, sink.retried, sink.dropped) == (0, 6, 3)
    assert metrics.registry.get_sample_value("voice_gateway_lifecycle_events_dropped_total",
                                             {"sink": "webhook"}) == 3
    assert metrics.registry.get_sample_value("voice_gateway_lifecycle_event_retries_total",
                                             {"sink": "webhook"}) == 6


async def test_a_stuck_consumer_never_blocks_publish_and_overflow_is_dropped(aiohttp_server: AiohttpServer) -> None:
    stuck = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        await stuck.wait()  # never answers
        return web.Response()

    app = web.Application()
    app.router.add_post("/events", hook)
    server = await aiohttp_server(app)
    sink = WebhookSink(str(server.make_url("/events")), timeout=30, queue_size=4)
    sink.start()
    await asyncio.sleep(0)
    started = time.perf_counter()
    for n in range(100):
        sink.publish({"type": "turn.completed", "n": n})
    assert time.perf_counter() - started < 0.05
    assert sink.dropped == 96  # the queue holds 4
    await sink.close(grace_s=0.2)  # what is queued or in flight is dropped too
    assert (sink.delivered, sink.dropped) == (0, 100)
    stuck.set()
