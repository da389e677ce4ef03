"""A real RealtimeSession on a memory transport whose agent is the ``openai`` chat agent, pointed at a
scripted Chat Completions upstream (tests/agents/chat_script.py says what it answers)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, get_args

from openai.types.realtime import RealtimeServerEvent
from pydantic import BaseModel, ValidationError

from gateway.agents.chat import ChatCompletionsAgent, ChatEndpoint
from gateway.agents.echo import EchoAgent
from gateway.agents.registry import AgentRegistry
from gateway.agents.upstream import UpstreamPolicy
from gateway.config import AgentsConfig, EventsConfig, GatewayConfig, SessionDefaults
from gateway.protocol.server_events import Event
from gateway.protocol.session_settings import SessionSettings
from gateway.session.session import RealtimeSession
from gateway.transports.memory import MemoryTransport
from gateway.voice.engines import Engines
from tests.gateway.agents.upstream_server import Behaviour, ScriptedUpstream, scripted_upstream
from tests.support.fakes import fake_engines

#: The openai SDK's GA server event models, by ``type``.
SERVER_EVENTS: dict[str, type[BaseModel]] = {
    get_args(model.model_fields["type"].annotation)[0]: model
    for model in get_args(get_args(RealtimeServerEvent)[0])}
CONFIG = GatewayConfig(events=EventsConfig(file=""), session=SessionDefaults(agent="openai"),
                       agents=AgentsConfig(openai_model="scripted-model"))


@dataclass
class ToolLine:
    session: RealtimeSession
    transport: MemoryTransport
    upstream: ScriptedUpstream

    def send(self, event: dict[str, Any]) -> None:
        self.transport.receive(json.dumps(event))

    def errors(self, since: int = 0) -> list[dict[str, Any]]:
        return [event["error"] for event in self.transport.sent[since:] if event["type"] == "error"]

    def events(self, type_: str, since: int = 0) -> list[Event]:
        return [event for event in self.transport.sent[since:] if event["type"] == type_]

    def off_schema(self) -> list[str]:
        """Events the official ``openai`` SDK's GA types refuse (strict pydantic validation), with why.

        Skipped: ``gateway.*`` extensions, which are not OpenAI's, and ``session.*``, whose WebRTC audio
        formats (16 kHz in, 48 kHz out) are not among the GA types' (docs/protocol.md, "Differences")."""
        refused = []
        for event in self.transport.sent:
            if event["type"].startswith(("gateway.", "session.")):
                continue
            model = SERVER_EVENTS.get(event["type"])
            try:
                if model is None:
                    raise ValueError("not a GA server event")
                model.model_validate(event)
            except (ValidationError, ValueError) as exc:
                refused.append(f"{event['type']}: {exc}")
        return refused

    def mark(self) -> int:
        return len(self.transport.sent)

    async def ask(self, text: str, **response: Any) -> Event:
        """A user message and a ``response.create``; the response's ``response.done``."""
        since = self.mark()
        self.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
        return await self.respond(since=since, **response)

    async def respond(self, since: int | None = None, within: float = 10.0, **response: Any) -> Event:
        since = self.mark() if since is None else since
        self.send({"type": "response.create", **({"response": response} if response else {})})
        return await self.transport.wait_event("response.done", since=since, within=within)

    async def answer(self, call_id: str, output: str) -> Event:
        """The client's tool result and its ``response.create`` (what the Agents SDK sends)."""
        since = self.mark()
        self.send({"type": "conversation.item.create",
                   "item": {"type": "function_call_output", "call_id": call_id, "output": output}})
        return await self.respond(since=since)


@contextlib.asynccontextmanager
async def tool_line(default: Behaviour, config: GatewayConfig = CONFIG, *, engines: Engines | None = None,
                    transport: MemoryTransport | None = None) -> AsyncIterator[ToolLine]:
    """``engines``: the fake ones unless given (the benchmark passes the real ones)."""
    async with scripted_upstream(default) as upstream:
        if engines is None:
            engines, _asr = fake_engines()
        endpoint = ChatEndpoint(upstream.url + "/v1", "scripted-model")
        agents = AgentRegistry({"openai": functools.partial(ChatCompletionsAgent, endpoint, UpstreamPolicy()),
                                "echo": EchoAgent})
        engines = dataclasses.replace(engines, agents=agents)
        transport = transport or MemoryTransport("rtc_tools")
        session = RealtimeSession("rtc_tools", config, engines,
                                  SessionSettings.from_config(config, engines.tts.voices), transport,
                                  on_closed=lambda _s: None)
        session.start()
        transport.open()
        try:
            yield ToolLine(session, transport, upstream)
        finally:
            await session.close()
