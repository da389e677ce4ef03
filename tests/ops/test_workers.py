"""A front's WorkerPool forwards calls to workers with the internal token (workers here: in-process
signaling apps on a fake call service, so no worker process or model is started)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
import socket
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app.front import create_front_app
from gateway.app.workers import WorkerLoad, WorkerPool, WorkerProcess
from gateway.config import AuthConfig, EventsConfig, GatewayConfig
from gateway.errors import CallNotFound, InvalidOffer
from signaling.internal import INTERNAL_TOKEN_ENV, internal_headers
from signaling.middlewares import signaling_app
from signaling.paths import CLIENT_SECRETS_PATH
from signaling.routes import setup_routes
from tests.signaling.fakes import FakeCalls
from tests.support.ops import real_offer

KEY = "sk-test-aaaaaaaaaaaaaaaaaaaaaaaa"
CONFIG = GatewayConfig(auth=AuthConfig(api_keys=(KEY,)), events=EventsConfig(file=""))


@pytest.fixture
async def pool(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[WorkerPool, list[FakeCalls]]]:
    """Two accepting workers, each a signaling app that needs an API key (or the pool's token)."""
    pool = WorkerPool(2, ["serve"])
    monkeypatch.setenv(INTERNAL_TOKEN_ENV, pool.token)  # what each worker process is started with
    services, servers = [], []
    for worker in pool.workers:
        service = FakeCalls()
        app = signaling_app(CONFIG)
        setup_routes(app, service, max_sdp_bytes=CONFIG.limits.max_sdp_bytes)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        worker.url = str(server.make_url("")).rstrip("/")
        worker.process = SimpleNamespace(returncode=None)  # type: ignore[assignment]  # alive, never spawned
        worker.load = WorkerLoad(accepting=True, reason=None)
        services.append(service)
        servers.append(server)
    pool._http = aiohttp.ClientSession()  # what start() opens, without spawning the workers
    try:
        yield pool, services
    finally:
        await pool._http.close()
        for server in servers:
            await server.close()


async def test_a_call_is_placed_on_a_worker_and_hung_up_there(pool: tuple[WorkerPool, list[FakeCalls]]) -> None:
    front, services = pool
    offer = await real_offer()
    call_id, answer = await front.create_call(offer, {"instructions": "Hi."})
    assert answer.replace("\r\n", "\n").strip() == offer.replace("\r\n", "\n").strip()  # the fake echoes it
    owner = next(s for s in services if s.has_call(call_id))  # past the worker's auth, by the token
    assert owner.calls[call_id] == {"instructions": "Hi."} and front.has_call(call_id)
    await front.hangup(call_id)
    assert not owner.calls and not front.has_call(call_id)
    with pytest.raises(CallNotFound):
        await front.hangup(call_id)


async def test_a_worker_refusing_the_offer_is_an_invalid_offer(pool: tuple[WorkerPool, list[FakeCalls]]) -> None:
    front, _ = pool
    with pytest.raises(InvalidOffer) as refused:
        await front.create_call("v=0\r\nnot an offer\r\n", None)
    assert refused.value.code == "invalid_sdp"


async def test_a_front_mints_client_secrets_with_the_session_unchecked(
        pool: tuple[WorkerPool, list[FakeCalls]]) -> None:
    front, _ = pool
    client: TestClient[Any, Any] = TestClient(TestServer(create_front_app(CONFIG, front)))
    await client.start_server()
    try:
        response = await client.post(CLIENT_SECRETS_PATH, json={"session": {"instructions": "Hi."}},
                                     headers={"Authorization": f"Bearer {KEY}"})
        assert response.status == 200
        body = await response.json()
        assert body["session"] == {"type": "realtime", "object": "realtime.session", "instructions": "Hi.",
                                   "gateway": {"pinned": ["instructions"]}}  # pinned by default: docs/protocol.md
        assert body["value"].startswith("ek_")
    finally:
        await client.close()


def bind_error(port: int) -> int | None:
    """The errno another local process gets binding ``port`` (None: it got the port)."""
    with socket.socket() as squatter:
        try:
            squatter.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno
    return None


async def test_the_front_binds_each_workers_port_so_the_token_only_reaches_the_worker() -> None:
    """free_port() picked a port and let the worker bind it a second later: another local process could take
    it in between and receive every request the front forwards, internal token included. Now the front binds
    the socket, the worker serves on that very socket, and the port is never free while the front sends to it."""
    worker = WorkerProcess(0, ["serve", "--events-file", ""], token="internal-" + "t" * 24)
    await worker.start()
    try:
        assert bind_error(worker.port) == errno.EADDRINUSE  # from the first moment: no window
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(worker.url + "/healthz") as response:
                        if response.status == 200:
                            break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the worker never answered on the socket the front bound")
            headers = internal_headers("internal-" + "t" * 24)
            async with http.get(worker.url + "/internal/load", headers=headers) as response:
                assert response.status == 200  # the worker process itself: it knows the token
                assert (await response.json())["connected_call_ids"] == []
    finally:
        worker.signal(signal.SIGTERM)
        await worker.wait(60)
    assert worker.process is not None and worker.process.returncode is not None
    assert bind_error(worker.port) == errno.EADDRINUSE  # the worker is gone, the front still holds its port
    worker.release_port()
    assert bind_error(worker.port) is None
