"""Lifecycle event sinks: JSON lines, and a webhook that retries, gives up and drops without blocking; the
shutdown flush keeps its budget (``events.shutdown_flush_seconds``) and logs every event it could not deliver."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.app.application import create_app
from gateway.config import EventsConfig, GatewayConfig
from gateway.ops.lifecycle import JsonLinesSink, LifecycleEvents, WebhookSink, build_sinks
from gateway.ops.metrics import GatewayMetrics
from gateway.ops.observers import TURN_STAGES, TurnReport
from tests.support.fakes import fake_engines
from tests.support.ops import free_port, real_offer

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
    await sink.close(flush_s=10)
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
    await sink.close(flush_s=0.2)  # what is queued or in flight is dropped too
    assert (sink.delivered, sink.dropped) == (0, 100)
    stuck.set()


def undelivered_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    """The events the sinks logged whole because they could not deliver them."""
    return [json.loads(str(record.args[-1])) for record in caplog.records  # type: ignore[index]
            if record.name == "gateway.ops.lifecycle" and "did not deliver" in record.msg]


async def endpoint(aiohttp_server: AiohttpServer, answer: Callable[[], Awaitable[web.Response]]) -> str:
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return await answer()

    app = web.Application()
    app.router.add_post("/events", hook)
    return str((await aiohttp_server(app)).make_url("/events"))


@pytest.mark.parametrize("failure", ["503", "hangs"])
async def test_the_shutdown_flush_keeps_its_budget_and_logs_every_event_it_could_not_deliver(
        aiohttp_server: AiohttpServer, caplog: pytest.LogCaptureFixture, failure: str) -> None:
    """A failing webhook took ~23 s an event (4 attempts of 5 s, 3.5 s of backoff): queued events were dropped
    at shutdown, silently. Now the flush ends with its budget and every event it could not deliver is logged."""
    hang = asyncio.Event()

    async def answer() -> web.Response:
        if failure == "hangs":
            await hang.wait()
        return web.Response(status=503)

    url = await endpoint(aiohttp_server, answer)
    [sink] = build_sinks(EventsConfig(file="", webhook_url=url, shutdown_flush_seconds=1.0))  # default timeouts
    sink.start()
    published = [{"type": "call.ended", "id": f"evt_{n}", "call_id": f"rtc_{n}"} for n in range(5)]
    for event in published:
        sink.publish(event)
    await asyncio.sleep(0.2)  # the first delivery is under way
    started = time.monotonic()
    await sink.close(1.0)
    took = time.monotonic() - started
    hang.set()
    assert took <= 1.0 + 0.6, took
    assert (sink.delivered, sink.dropped) == (0, 5)
    assert sorted(str(e["id"]) for e in undelivered_lines(caplog)) == [e["id"] for e in published]  # nothing silent


async def test_the_shutdown_flush_delivers_what_a_flaky_endpoint_takes_within_the_budget(
        aiohttp_server: AiohttpServer) -> None:
    answers = iter([503, 200] * 4)

    async def answer() -> web.Response:
        return web.Response(status=next(answers))

    url = await endpoint(aiohttp_server, answer)
    [sink] = build_sinks(EventsConfig(file="", webhook_url=url), retry_delay=0.1)
    sink.start()
    for n in range(4):
        sink.publish({"type": "turn.completed", "id": f"evt_{n}"})
    await sink.close(3.0)
    assert (sink.delivered, sink.dropped) == (4, 0)
    assert isinstance(sink, WebhookSink) and sink.retried == 4


async def test_one_event_gets_at_most_the_event_timeout_then_the_next_one_is_sent(
        aiohttp_server: AiohttpServer, caplog: pytest.LogCaptureFixture) -> None:
    hang = asyncio.Event()
    received: list[float] = []

    async def answer() -> web.Response:
        received.append(time.monotonic())
        if len(received) == 1:
            await hang.wait()  # the first attempt at the first event never answers
        return web.Response(status=200)

    url = await endpoint(aiohttp_server, answer)
    sink = WebhookSink(url, timeout=5.0, event_timeout=0.5, retries=3, retry_delay=0.2)
    sink.start()
    started = time.monotonic()
    sink.publish({"type": "call.started", "id": "evt_slow"})
    sink.publish({"type": "call.started", "id": "evt_next"})
    await sink.close(5.0)
    hang.set()
    assert (sink.delivered, sink.dropped) == (1, 1)
    assert [e["id"] for e in undelivered_lines(caplog)] == ["evt_slow"]
    assert received[-1] - started <= 0.5 + 0.3  # the attempt was cut to the event's 0.5 s, then evt_next went


async def test_an_app_shutting_down_flushes_its_webhook_within_events_shutdown_flush_seconds(
        aiohttp_server: AiohttpServer, caplog: pytest.LogCaptureFixture) -> None:
    hang = asyncio.Event()

    async def answer() -> web.Response:
        await hang.wait()
        return web.Response()

    url = await endpoint(aiohttp_server, answer)
    config = GatewayConfig(events=EventsConfig(file="", webhook_url=url, shutdown_flush_seconds=1.0))
    gateway = TestServer(create_app(config, engines=fake_engines()[0]), host="127.0.0.1")
    await gateway.start_server()
    async with aiohttp.ClientSession() as http, http.post(
            gateway.make_url("/v1/realtime/calls"), data=await real_offer(),
            headers={"Content-Type": "application/sdp"}) as response:
        assert response.status == 201
        call_id = response.headers["Location"].rsplit("/", 1)[1]
    started = time.monotonic()
    await gateway.close()  # the call ends (shutdown), then the sinks get their 1 s
    took = time.monotonic() - started
    hang.set()
    lost = undelivered_lines(caplog)
    assert [(e["type"], e["call_id"]) for e in lost] == [("call.started", call_id), ("call.ended", call_id)]
    assert lost[1]["reason"] == "shutdown"
    assert took <= 1.0 + 1.5, took  # the flush's budget, plus closing the call
