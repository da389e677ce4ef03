"""Health while the models load in the background, and a start-up whose models fail to load."""

from __future__ import annotations

import asyncio
import threading

from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.config import EventsConfig, GatewayConfig, ServerConfig
from gateway.engines import Engines
from gateway.serve import serve
from tests.support.fakes import fake_engines
from tests.support.ops import get_json

CONFIG = GatewayConfig(events=EventsConfig(file=""))


async def test_alive_at_once_ready_only_when_the_models_are_loaded() -> None:
    release = threading.Event()

    def slow_loader(config: GatewayConfig) -> Engines:
        release.wait(10)
        return fake_engines()[0]

    server = TestServer(create_app(CONFIG, engine_loader=slow_loader), host="127.0.0.1")
    await server.start_server()
    try:
        url = str(server.make_url("")).rstrip("/")
        assert (await get_json(url, "/healthz"))[0] == 200
        assert await get_json(url, "/readyz") == (503, {"status": "unavailable", "reason": "engines_not_loaded"})
        release.set()
        for _ in range(100):
            status, _body = await get_json(url, "/readyz")
            if status == 200:
                break
            await asyncio.sleep(0.02)
        assert status == 200
    finally:
        release.set()
        await server.close()


async def test_serve_exits_1_when_the_models_cannot_be_loaded() -> None:
    def broken_loader(config: GatewayConfig) -> Engines:
        raise RuntimeError("no model here")

    config = GatewayConfig(server=ServerConfig(port=0), events=EventsConfig(file=""))
    assert await asyncio.wait_for(serve(create_app(config, engine_loader=broken_loader), config), 20) == 1
