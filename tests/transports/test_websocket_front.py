"""Behind a worker front (``server.workers > 1``) a Realtime WebSocket is proxied to a worker.

The workers are in-process single-process apps with fake engines, started with the pool's
internal token (no worker process is spawned); the front is the real front app.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestServer

from gateway.app.application import create_app
from gateway.app.front import create_front_app
from gateway.app.keys import REGISTRY
from gateway.app.workers import WorkerLoad, WorkerPool
from gateway.config import AuthConfig, EventsConfig, GatewayConfig
from signaling.internal import INTERNAL_TOKEN_ENV
from tests.support.calls import without_load_shedding
from tests.support.fakes import fake_engines

KEY = "sk-front-test-key-0123456789"
CONFIG = without_load_shedding(GatewayConfig(auth=AuthConfig(api_keys=(KEY,)), events=EventsConfig(file="")))
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def front(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, WorkerPool, list[Any]]]:
    pool = WorkerPool(2, ["serve"])
    monkeypatch.setenv(INTERNAL_TOKEN_ENV, pool.token)
    servers, apps = [], []
    for worker in pool.workers:
        app = create_app(CONFIG, engines=fake_engines()[0])
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        worker.url = str(server.make_url("")).rstrip("/")
        worker.process = SimpleNamespace(returncode=None)  # type: ignore[assignment]  # alive, never spawned
        worker.load = WorkerLoad(accepting=True, reason=None)
        servers.append(server)
        apps.append(app)
    pool._http = aiohttp.ClientSession()
    front_server = TestServer(create_front_app(CONFIG, pool), host="127.0.0.1")
    await front_server.start_server()
    try:
        yield str(front_server.make_url("")).rstrip("/"), pool, apps
    finally:
        await front_server.close()
        await pool._http.close()
        for server in servers:
            await server.close()


async def next_event(ws: Any, type_: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            message = await ws.receive()
            assert message.type == WSMsgType.TEXT, message
            event = json.loads(message.data)
            if event["type"] == type_:
                return event  # type: ignore[no-any-return]


async def test_a_socket_call_and_its_sideband_go_through_the_front(front: tuple[str, WorkerPool, list[Any]]) -> None:
    url, pool, apps = front
    async with aiohttp.ClientSession() as http:
        call = await http.ws_connect(f"{url}/v1/realtime?model=x", headers=AUTH)
        call_id = (await next_event(call, "session.created"))["session"]["id"]
        owner = next(i for i, app in enumerate(apps) if app[REGISTRY].has_call(call_id))
        assert pool.has_call(call_id) and pool._owner[call_id] is pool.workers[owner]
        sideband = await http.ws_connect(f"{url}/v1/realtime?call_id={call_id}", headers=AUTH)
        await next_event(sideband, "session.created")
        await sideband.send_str(json.dumps({"type": "session.update", "session": {"instructions": "via front"}}))
        for ws in (call, sideband):
            assert (await next_event(ws, "session.updated"))["session"]["instructions"] == "via front"
        await sideband.close()
        await call.close()
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{url}/v1/realtime?call_id=rtc_00000000000000000000", headers=AUTH)
        assert refused.value.status == 404
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{url}/v1/realtime")
        assert refused.value.status == 401


async def test_a_client_secrets_session_reaches_the_worker(front: tuple[str, WorkerPool, list[Any]]) -> None:
    url, _, _ = front
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/v1/realtime/client_secrets", headers=AUTH,
                             json={"session": {"instructions": "bound at the front"}}) as minted:
            token = (await minted.json())["value"]
        call = await http.ws_connect(f"{url}/v1/realtime", headers={"Authorization": f"Bearer {token}"})
        assert (await next_event(call, "session.created"))["session"]["instructions"] == "bound at the front"
        await call.close()


async def test_a_full_worker_is_skipped(front: tuple[str, WorkerPool, list[Any]]) -> None:
    url, pool, apps = front
    apps[0][REGISTRY].draining = True  # worker 0 answers 503: the next one is tried
    async with aiohttp.ClientSession() as http:
        call = await http.ws_connect(f"{url}/v1/realtime", headers=AUTH)
        call_id = (await next_event(call, "session.created"))["session"]["id"]
        assert apps[1][REGISTRY].has_call(call_id)
        assert pool.workers[0].load.accepting is False
        await call.close()
