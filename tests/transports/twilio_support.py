"""A gateway for Twilio tests: telephony configured, an observer that records what the calls did."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp.test_utils import TestServer

from gateway.app.application import REGISTRY, create_app
from gateway.config import EventsConfig, GatewayConfig, TelephonyConfig
from gateway.ops.observers import CallObserver
from gateway.session.session import RealtimeSession
from gateway.voice.engines import Engines
from tests.support.calls import without_load_shedding

TOKEN = "0123456789abcdef0123456789abcdef"


@dataclass
class Recorder(CallObserver):
    """What the calls told their observer, with monotonic times."""

    started: list[str] = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)
    barge_ins: list[float] = field(default_factory=list)  # when the gateway decided to stop a reply
    played: list[tuple[float, float]] = field(default_factory=list)  # (heard seconds, underrun seconds) per reply
    on_barge_in: Callable[[str], None] | None = None  # called as the gateway decides (the call id)
    over_reply: list[tuple[float, str]] = field(default_factory=list)  # speech over a reply: paused/resumed/cancelled
    on_pause: Callable[[str], None] | None = None  # called as the gateway pauses a reply (the call id)

    def call_started(self, call_id: str) -> None:
        self.started.append(call_id)

    def call_ended(self, call_id: str, reason: str, duration_s: float, turns: int) -> None:
        self.ended[call_id] = reason

    def barge_in(self, call_id: str, stop_s: float | None) -> None:
        self.barge_ins.append(time.monotonic())
        if self.on_barge_in is not None:
            self.on_barge_in(call_id)

    def speech_over_reply(self, call_id: str, outcome: str) -> None:
        self.over_reply.append((time.monotonic(), outcome))
        if outcome == "paused" and self.on_pause is not None:
            self.on_pause(call_id)

    def reply_played(self, call_id: str, played_s: float, underrun_s: float) -> None:
        self.played.append((played_s, underrun_s))


@dataclass
class PhoneGateway:
    server: TestServer
    recorder: Recorder

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def call(self, call_id: str) -> RealtimeSession:
        return self.server.app[REGISTRY].get(call_id)

    def live(self, call_id: str) -> bool:
        return self.server.app[REGISTRY].has_call(call_id)


@asynccontextmanager
async def phone_gateway(engines: Engines, *, telephony: TelephonyConfig | None = None,
                        change: Callable[[GatewayConfig], GatewayConfig] | None = None) -> AsyncIterator[PhoneGateway]:
    config = GatewayConfig(events=EventsConfig(file=""),
                           telephony=telephony or TelephonyConfig(twilio_auth_token=TOKEN))
    config = without_load_shedding(config if change is None else change(config))
    recorder = Recorder()
    server = TestServer(create_app(config, engines=engines, observers=[recorder]), host="127.0.0.1")
    await server.start_server()
    try:
        yield PhoneGateway(server, recorder)
    finally:
        await server.close()


def replace_limits(**limits: object) -> Callable[[GatewayConfig], GatewayConfig]:
    def change(config: GatewayConfig) -> GatewayConfig:
        return dataclasses.replace(config, limits=dataclasses.replace(config.limits, **limits))  # type: ignore[arg-type]

    return change


async def until(condition: Callable[[], object], within: float = 5.0, step: float = 0.005) -> None:
    """Wait until ``condition()`` is true, at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true within {within:g} s")
        await asyncio.sleep(step)


def frames_at_barge_in(gateway: PhoneGateway) -> list[int]:
    """The media frames each call had sent when the gateway decided to stop its reply (filled as it does)."""
    counts: list[int] = []

    def record(call_id: str) -> None:
        audio = gateway.call(call_id).transport.audio_out
        counts.append(getattr(audio, "frames_sent", -1))

    gateway.recorder.on_barge_in = record
    return counts


def frames_at_pause(gateway: PhoneGateway) -> list[int]:
    """The media frames each call had sent when the gateway paused its reply (speech over it; filled as it does)."""
    counts: list[int] = []

    def record(call_id: str) -> None:
        audio = gateway.call(call_id).transport.audio_out
        counts.append(getattr(audio, "frames_sent", -1))

    gateway.recorder.on_pause = record
    return counts
