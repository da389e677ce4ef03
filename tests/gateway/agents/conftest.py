"""Agent test fixtures: a real local LLM server, a scripted upstream, a gateway wired to both."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp.test_utils import TestServer

from gateway.agents.local_llm import LocalLlmServer
from gateway.app.application import create_app
from gateway.app.engines import default_agents
from gateway.config import GatewayConfig
from gateway.voice.engines import Engines
from tests.gateway.agents.upstream_server import ScriptedUpstream, stream


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LocalLlmServer]:
    """``python -m llama_cpp.server`` with SmolLM2-135M-Instruct on a free localhost port."""
    server = LocalLlmServer(threads=2)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    scripted = ScriptedUpstream(stream(["All good."]))
    server = TestServer(scripted.app, host="127.0.0.1")
    await server.start_server()
    scripted.url = str(server.make_url("")).rstrip("/")
    try:
        yield scripted
    finally:
        await server.close()


@pytest.fixture
async def gateway_server(engines: Engines, gateway_config: GatewayConfig) -> AsyncIterator[TestServer]:
    """The gateway with the real engines and the agents ``gateway_config`` enables."""
    agents = default_agents(gateway_config)
    server = TestServer(create_app(gateway_config, engines=dataclasses.replace(engines, agents=agents)),
                        host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()
        agents.close()
