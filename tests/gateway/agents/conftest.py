"""Agent test fixtures: a real local LLM server, a scripted upstream, a gateway wired to both."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from collections.abc import AsyncIterator, Iterator

import pytest
from aiohttp.test_utils import TestServer

from gateway.agents.local_llm import LocalLlmServer
from gateway.app.application import create_app
from gateway.app.engines import default_agents
from gateway.config import GatewayConfig
from gateway.voice.engines import Engines
from tests.gateway.agents.upstream_server import ScriptedUpstream, scripted_upstream, stream
from tests.support.calls import without_load_shedding


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LocalLlmServer]:
    """``python -m llama_cpp.server`` with SmolLM2-135M-Instruct on a free localhost port, warmed up.

    One thread: the gateway's own engines share the machine, and two llama.cpp threads on two busy
    cores wait on each other (measured with one core kept busy: 4-13 tokens/s with 3.4 s gaps, against
    14-37 tokens/s with gaps under 0.15 s). The first request pays for loading the model (4-5 s under
    load); it is made here, not by the first test that needs an answer in time.
    """
    server = LocalLlmServer(threads=1)
    server.start()
    try:
        warm_up(server)
        yield server
    finally:
        server.close()


def warm_up(server: LocalLlmServer) -> None:
    body = {"model": "smollm2", "max_tokens": 4, "messages": [{"role": "user", "content": "Hello."}]}
    request = urllib.request.Request(server.base_url + "/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    async with scripted_upstream(stream(["All good."])) as scripted:
        yield scripted


@pytest.fixture
async def gateway_server(engines: Engines, gateway_config: GatewayConfig) -> AsyncIterator[TestServer]:
    """The gateway with the real engines and the agents ``gateway_config`` enables."""
    agents = default_agents(gateway_config)
    server = TestServer(create_app(without_load_shedding(gateway_config),
                                   engines=dataclasses.replace(engines, agents=agents)), host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()
        agents.close()
