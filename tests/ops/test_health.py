"""Health while the models load in the background, and a start-up whose models fail to load."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading

import aiohttp
from aiohttp.test_utils import TestServer

from gateway.app.application import create_app
from gateway.app.serve import serve
from gateway.config import EventsConfig, GatewayConfig, ServerConfig
from gateway.voice.engines import Engines
from tests.support.fakes import fake_engines
from tests.support.ops import free_port, get_json, real_offer

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


async def test_serve_stays_up_unready_when_the_models_cannot_be_loaded() -> None:
    def broken_loader(config: GatewayConfig) -> Engines:
        raise RuntimeError("no model here")

    port = free_port()
    config = GatewayConfig(server=ServerConfig(port=port), events=EventsConfig(file=""))
    serving = asyncio.create_task(serve(create_app(config, engine_loader=broken_loader), config))
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        await asyncio.sleep(0.1)
        with contextlib.suppress(aiohttp.ClientError):
            status, body = await get_json(url, "/readyz")
            if status == 503:
                break
    assert not serving.done()  # no crash loop: the process keeps answering
    assert (status, body["reason"]) == (503, "engines_not_loaded")
    async with aiohttp.ClientSession() as http, http.post(
            url + "/v1/realtime/calls", data=await real_offer(), headers={"Content-Type": "application/sdp"}) as r:
        assert r.status == 503 and (await r.json())["error"]["code"] == "engine_unavailable"
    os.kill(os.getpid(), signal.SIGTERM)  # serve() handles it: stop, and say the start-up failed
    assert await asyncio.wait_for(serving, 20) == 1
