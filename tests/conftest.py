"""Shared fixtures: real engines loaded once; a gateway on a real port per test."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp.test_utils import TestServer

from gateway.app.application import create_app
from gateway.app.engines import load_engines, warm_up
from gateway.config import EventsConfig, GatewayConfig, ServerConfig
from gateway.voice.engines import Engines
from qa.caller import Caller
from tests.support.calls import without_load_shedding

logging.getLogger("aioice").setLevel(logging.WARNING)
logging.getLogger("aiortc").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def engines() -> Iterator[Engines]:
    loaded = load_engines(GatewayConfig())
    asyncio.run(warm_up(loaded))
    yield loaded
    loaded.close()


@pytest.fixture
def gateway_config() -> GatewayConfig:
    # no lifecycle events on the test's stdout; no gRPC port (tests/speech binds free ones)
    return GatewayConfig(events=EventsConfig(file=""), server=ServerConfig(grpc_port=0))


@pytest.fixture
async def gateway_server(engines: Engines, gateway_config: GatewayConfig) -> AsyncIterator[TestServer]:
    server = TestServer(create_app(without_load_shedding(gateway_config), engines=engines), host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def gateway_url(gateway_server: TestServer) -> str:
    return str(gateway_server.make_url("")).rstrip("/")


@pytest.fixture
async def caller(gateway_url: str) -> AsyncIterator[Caller]:
    call = Caller(gateway_url)
    await call.connect()
    try:
        yield call
    finally:
        await call.hangup()
