"""A real ``redis-server`` on a free port (one per session, flushed for each test) and gateway instances on it.

The binary is Debian's ``redis-server`` (the README's test command installs it, as it does Chromium). Without
it these tests are skipped — except in CI (``CI`` set), where a missing server fails them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio
from aiohttp.test_utils import TestServer

from gateway.app.application import create_app
from gateway.config import AuthConfig, ClusterConfig, EventsConfig, GatewayConfig, LimitsConfig
from gateway.voice.engines import Engines
from tests.support.calls import without_load_shedding
from tests.support.ops import free_port

API_KEY = "sk-cluster-test-0123456789"
INTERNAL_TOKEN = "cluster-internal-token-0123456789"


class RedisServer:
    """``redis-server`` in a temporary directory, no persistence; :meth:`stop` and :meth:`start` it at will."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir), "--logfile", str(self.workdir / "redis.log")]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.terminate()
            process.wait(10)

    @property
    def running(self) -> bool:
        return self.process is not None

    def flush(self) -> None:
        client = redis.Redis.from_url(self.url)
        client.flushall()
        client.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing (Debian: apt-get install redis-server; `make test` installs it)")
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server; `make test` does it)")
    server = RedisServer(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The URL of the session's Redis, empty for this test (and running again after it, if a test stopped it)."""
    if not redis_server.running:
        redis_server.start()
    redis_server.flush()
    yield redis_server.url
    if not redis_server.running:
        redis_server.start()


def cluster_config(redis_url: str, name: str, port: int, **limits: Any) -> GatewayConfig:
    """An instance's configuration: keys required, a fast heartbeat (0.2 s) and a short lease (1 s)."""
    cluster = ClusterConfig(redis_url=redis_url, instance_id=name, instance_url=f"http://127.0.0.1:{port}",
                            internal_token=INTERNAL_TOKEN, heartbeat_seconds=0.2, lease_seconds=1.0)
    config = GatewayConfig(auth=AuthConfig(api_keys=(API_KEY,)), events=EventsConfig(file=""),
                           limits=LimitsConfig(**limits), cluster=cluster)
    return without_load_shedding(config)


@dataclasses.dataclass
class Instance:
    name: str
    server: TestServer

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


MakeInstances = Callable[..., Awaitable[list[Instance]]]


@pytest.fixture
async def make_instances(engines: Engines, redis_url: str) -> AsyncIterator[MakeInstances]:
    """``await make_instances("a", "b", max_calls_per_client=2, events=EventsConfig(...))``: gateway apps on
    real ports sharing the test's Redis, each joined (its first heartbeat went through)."""
    started: list[TestServer] = []

    async def make(*names: str, events: EventsConfig | None = None, **limits: Any) -> list[Instance]:
        instances = []
        for name in names:
            port = free_port()
            config = cluster_config(redis_url, name, port, **limits)
            if events is not None:
                config = dataclasses.replace(config, events=events)
            server = TestServer(create_app(config, engines=engines), host="127.0.0.1", port=port)
            await server.start_server()
            started.append(server)
            instances.append(Instance(name, server))
        await joined(redis_url, len(started))
        return instances

    yield make
    for server in reversed(started):
        await server.close()


async def joined(redis_url: str, count: int, within: float = 10.0) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + within
        while await client.zcard("vg:instances") < count:
            assert time.monotonic() < deadline, "the instances did not join"
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
