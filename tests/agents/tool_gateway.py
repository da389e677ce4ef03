"""A gateway whose ``openai`` agent is a scripted Chat Completions server that calls ``get_weather``.

The end-to-end tool tests (WebRTC, the Realtime WebSocket, a sideband, the Agents SDK in Chromium)
all serve this one gateway: real engines, the scripted model of :mod:`tests.agents.chat_script`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp.test_utils import TestServer

from gateway.app.application import create_app
from gateway.app.engines import default_agents
from gateway.config import AgentsConfig, AuthConfig, EventsConfig, GatewayConfig, SessionDefaults
from gateway.voice.engines import Engines
from tests.gateway.agents.upstream_server import ScriptedUpstream
from tests.support.calls import without_load_shedding


@asynccontextmanager
async def tool_gateway(engines: Engines, upstream: ScriptedUpstream, *,
                       api_keys: tuple[str, ...] = ()) -> AsyncIterator[TestServer]:
    """A started gateway whose default agent is ``openai`` on ``upstream``; ``api_keys``: its server keys."""
    config = GatewayConfig(events=EventsConfig(file=""), session=SessionDefaults(agent="openai"),
                           agents=AgentsConfig(openai_base_url=upstream.url + "/v1", openai_model="scripted"),
                           auth=AuthConfig(api_keys=api_keys))
    agents = default_agents(config)
    server = TestServer(create_app(without_load_shedding(config), engines=dataclasses.replace(engines, agents=agents)),
                        host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()
        agents.close()
