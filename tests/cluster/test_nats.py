"""The NATS JetStream sink of lifecycle events (gateway/ops/nats_stream.py) on a real ``nats-server -js``."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from gateway.config import EventsConfig
from gateway.ops.lifecycle import LifecycleEvents, build_sinks
from gateway.ops.metrics import GatewayMetrics
from gateway.ops.nats_stream import STREAM_NAME
from tests.support.ops import Scrape, free_port

SUBJECT = "voice-gateway.events"
RETRIES = "voice_gateway_lifecycle_event_retries_total"
DROPPED = "voice_gateway_lifecycle_events_dropped_total"


class NatsServer:
    def __init__(self, binary: str, workdir: Path) -> None:
        self.argv = [binary, "-js", "-a", "127.0.0.1", "-p", str(free_port()), "-sd", str(workdir)]
        self.url = f"nats://127.0.0.1:{self.argv[-3]}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        assert self.process.poll() is None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            process.wait(10)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    binary = shutil.which("nats-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nats-server is missing (Debian: apt-get install nats-server; `make test` installs it)")
        pytest.skip("nats-server is not installed (Debian: apt-get install nats-server; `make test` does it)")
    server = NatsServer(binary, tmp_path)
    server.start()
    yield server
    server.stop()


def lifecycle(url: str, metrics: GatewayMetrics, **events: Any) -> LifecycleEvents:
    sinks = build_sinks(EventsConfig(file="", nats_url=url, **events), retry_delay=0.05,
                        on_drop=lambda sink: metrics.events_dropped.labels(sink).inc(),
                        on_retry=lambda sink: metrics.event_retries.labels(sink).inc())
    return LifecycleEvents(sinks)


async def stored(url: str) -> list[dict[str, Any]]:
    client = await nats.connect(url)
    try:
        js = client.jetstream()
        info = await js.stream_info(STREAM_NAME)
        found = []
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            message = await js.get_msg(STREAM_NAME, sequence)
            assert message.data is not None
            found.append(json.loads(message.data))
        return found
    finally:
        await client.close()


async def until_stored(url: str, count: int, within: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        try:
            found = await stored(url)
        except Exception:  # the stream is not there yet, or the server is starting
            found = []
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} of {count} events stored"
        await asyncio.sleep(0.1)


async def test_events_are_stored_in_jetstream_once_each(nats_server: NatsServer) -> None:
    events = lifecycle(nats_server.url, GatewayMetrics())
    events.start()
    events.call_started("rtc_1")
    events.call_ended("rtc_1", "hangup", 2.0, 0)
    found = await until_stored(nats_server.url, 2)
    assert [e["type"] for e in found] == ["call.started", "call.ended"]
    sink = events.sinks[0]
    sink.publish(found[0])  # the same event again (a retry whose acknowledgement was lost): stored once
    events.call_ended("rtc_2", "hangup", 1.0, 0)
    found = await until_stored(nats_server.url, 3)
    assert [e["call_id"] for e in found] == ["rtc_1", "rtc_1", "rtc_2"]
    await events.close(2.0)


async def test_events_wait_while_nats_is_down_and_are_stored_after_it_returns(nats_server: NatsServer) -> None:
    metrics = GatewayMetrics()
    events = lifecycle(nats_server.url, metrics)
    events.start()
    events.call_started("rtc_before")
    await until_stored(nats_server.url, 1)
    nats_server.stop()
    for i in range(10):
        events.call_started(f"rtc_{i}")
    deadline = time.monotonic() + 10
    while Scrape(metrics.render().decode()).value(RETRIES, sink="nats_stream") < 1:  # an attempt timed out (1 s)
        assert time.monotonic() < deadline, "no retry"
        await asyncio.sleep(0.1)
    nats_server.start()  # the same store directory: the stream and its first event are still there
    found = await until_stored(nats_server.url, 11)
    assert [e["call_id"] for e in found] == ["rtc_before", *(f"rtc_{i}" for i in range(10))]
    assert Scrape(metrics.render().decode()).value(DROPPED, sink="nats_stream") == 0
    await events.close(2.0)
