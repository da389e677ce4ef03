"""A gateway with the speech services on real ports (HTTP and gRPC), the real engines, an API key."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestServer
from openai import AsyncOpenAI

from gateway.app.application import create_app
from gateway.config import AuthConfig, EventsConfig, GatewayConfig, ServerConfig
from gateway.voice.engines import Engines
from tests.support.calls import without_load_shedding

API_KEY = "sk-test-speech-services-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SpeechGateway:
    server: TestServer
    grpc_port: int

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    @property
    def grpc_uri(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


def speech_config(**speech: object) -> GatewayConfig:
    config = without_load_shedding(GatewayConfig(
        events=EventsConfig(file=""), server=ServerConfig(grpc_port=free_port()), auth=AuthConfig(api_keys=(API_KEY,))))
    return dataclasses.replace(config, speech=dataclasses.replace(config.speech, **speech)) if speech else config


async def start_gateway(config: GatewayConfig, engines: Engines | None = None) -> SpeechGateway:
    server = TestServer(create_app(config, engines=engines), host="127.0.0.1")
    await server.start_server()
    return SpeechGateway(server, config.server.grpc_port)


@pytest.fixture
async def speech_gateway(engines: Engines) -> AsyncIterator[SpeechGateway]:
    gateway = await start_gateway(speech_config(), engines)
    try:
        yield gateway
    finally:
        await gateway.server.close()


@pytest.fixture
async def openai_client(speech_gateway: SpeechGateway) -> AsyncIterator[AsyncOpenAI]:
    client = AsyncOpenAI(base_url=speech_gateway.url + "/v1", api_key=API_KEY, max_retries=0)
    try:
        yield client
    finally:
        await client.close()
