"""Sessions whose agents talk to a real local HTTP upstream (for the security review's agent findings).

A :class:`RealtimeSession` on the in-memory transport, with the fake audio engines and the real
``openai`` / ``webhook`` agents built by :func:`agent_factories` from the configuration, so every
request goes through the real agent, its upstream code and aiohttp to
:class:`~tests.gateway.agents.upstream_server.ScriptedUpstream` on a loopback port.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from gateway.agents.factories import agent_factories
from gateway.agents.registry import AgentRegistry
from gateway.config import AgentsConfig, EventsConfig, GatewayConfig, LimitsConfig, SessionDefaults
from gateway.ops.observers import NULL_OBSERVER, CallObserver
from gateway.protocol.server_events import Event
from gateway.protocol.session_settings import SessionSettings
from gateway.session.session import RealtimeSession
from gateway.transports.memory import MemoryTransport
from gateway.voice.engines import Engines
from tests.support.fakes import fake_engines

APOLOGY = "Sorry, I can't answer that right now."


def agent_config(agent: str, url: str, *, limits: LimitsConfig | None = None) -> GatewayConfig:
    """``agent`` ("openai": ``url`` is its base URL; "webhook": its URL) as the session's agent."""
    agents = (AgentsConfig(openai_base_url=url, openai_model="test-model", apology=APOLOGY,
                           connect_timeout_seconds=2.0, response_timeout_seconds=3.0, idle_timeout_seconds=2.0)
              if agent == "openai" else
              AgentsConfig(webhook_url=url, apology=APOLOGY, connect_timeout_seconds=2.0,
                           response_timeout_seconds=3.0, idle_timeout_seconds=2.0))
    return GatewayConfig(events=EventsConfig(file=""), limits=limits or LimitsConfig(),
                         session=SessionDefaults(agent=agent), agents=agents)


def engines_for(config: GatewayConfig) -> Engines:
    engines, _asr = fake_engines()
    factories, close = agent_factories(config)
    return dataclasses.replace(engines, agents=AgentRegistry(factories, on_close=close))


@dataclass
class Line:
    session: RealtimeSession
    transport: MemoryTransport

    def send(self, event: dict[str, Any]) -> None:
        self.transport.receive(json.dumps(event))

    def add_item(self, item_id: str, text: str, role: str = "user") -> None:
        kind = "input_text" if role == "user" else "output_text"
        self.send({"type": "conversation.item.create",
                   "item": {"id": item_id, "type": "message", "role": role, "content": [{"type": kind, "text": text}]}})

    async def respond(self) -> Event:
        """``response.create``; the ``response.done`` that ends it."""
        since = len(self.transport.sent)
        self.send({"type": "response.create"})
        return await self.transport.wait_event("response.done", since=since, within=15)


@contextlib.asynccontextmanager
async def memory_session(config: GatewayConfig, *, call_id: str = "rtc_review",
                         observer: CallObserver = NULL_OBSERVER) -> AsyncIterator[Line]:
    engines = engines_for(config)
    transport = MemoryTransport(call_id)
    session = RealtimeSession(call_id, config, engines, SessionSettings.from_config(config, engines.tts.voices),
                              transport, on_closed=lambda _: None, observer=observer)
    session.start()
    transport.open()
    try:
        yield Line(session, transport)
    finally:
        await session.close()
        engines.agents.close()
