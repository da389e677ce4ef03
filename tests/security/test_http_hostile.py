"""Hostile HTTP, byte by byte on a raw socket: split and trickled bodies, oversized forms, rebinding Hosts.

Each test talks to a real gateway (create_app with fake engines, WebRTC answers from aiortc) on
loopback, through ``asyncio.open_connection``: what a browser, curl or an attacker sends, not what
aiohttp's client would.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.app.application import REGISTRY, create_app
from gateway.config import EventsConfig, GatewayConfig, LimitsConfig, ServerConfig
from signaling.body import FORM_OVERHEAD_BYTES, MAX_FORM_PARTS
from signaling.hosts import HostPolicy, host_name
from tests.support.fakes import fake_engines
from tests.support.ops import real_offer

CALLS = "/v1/realtime/calls"
SECRETS = "/v1/realtime/client_secrets"
BOUNDARY = "voicegatewayboundary"
Server = Callable[..., Awaitable[TestServer]]


@pytest.fixture
async def serve() -> AsyncIterator[Server]:
    servers: list[TestServer] = []

    async def start(*, body_timeout: float = 10.0, **server: Any) -> TestServer:
        limits = LimitsConfig(max_calls_per_client=0, calls_per_client_per_minute=0,
                              body_read_timeout_seconds=body_timeout)
        config = GatewayConfig(events=EventsConfig(file=""), limits=limits, server=ServerConfig(**server))
        test_server = TestServer(create_app(config, engines=fake_engines()[0]), host="127.0.0.1")
        await test_server.start_server()
        servers.append(test_server)
        return test_server

    yield start
    for test_server in servers:
        await test_server.close()


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body
        self.at = time.monotonic()  # when it arrived

    @property
    def code(self) -> str:
        """The JSON error's code ("" for any other body: an SDP answer)."""
        try:
            return str(json.loads(self.body)["error"]["code"])
        except (ValueError, KeyError, TypeError):
            return ""


async def exchange(server: TestServer, head: str, *pieces: bytes, pause: float = 0.0,
                   within: float = 15.0) -> Answer:
    """Send ``head`` (request line and headers) and the body ``pieces``, ``pause`` s apart, each as its own
    segment, and read one response meanwhile (sending stops once it has come)."""
    assert server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    answer = asyncio.create_task(asyncio.wait_for(_read_answer(reader), within))
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n")
        await writer.drain()
        for index, piece in enumerate(pieces):
            if index and pause:
                await asyncio.wait([answer], timeout=pause)
            if answer.done():
                break
            writer.write(piece)
            await writer.drain()
        return await answer
    finally:
        answer.cancel()
        writer.close()
        await writer.wait_closed()


async def _read_answer(reader: asyncio.StreamReader) -> Answer:
    status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
    fields = (line.partition(":") for line in lines if line)
    headers = {name.strip().lower(): value.strip() for name, _, value in fields}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(status_line.split()[1]), headers, body)


def request_head(server: TestServer, path: str, content_type: str, length: int | None,
                 host: str | None = None, **headers: str) -> str:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host or f'127.0.0.1:{server.port}'}", f"Content-Type: {content_type}"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return "\n".join(lines) + "\n"


def form(*parts: tuple[str, str, bytes]) -> bytes:
    """A multipart/form-data body of (name, content type, data) parts."""
    body = b"".join(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n"
                    f"Content-Type: {kind}\r\n\r\n".encode() + data + b"\r\n" for name, kind, data in parts)
    return body + f"--{BOUNDARY}--\r\n".encode()


def chunked(body: bytes, size: int = 16 * 1024) -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"


FORM_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


# ----------------------------------------------------------------------------- bodies


async def test_an_offer_in_two_segments_with_a_pause_between_them_is_answered(serve: Server) -> None:
    server = await serve()
    offer = (await real_offer()).encode()
    half = len(offer) // 2
    answer = await exchange(server, request_head(server, CALLS, "application/sdp", len(offer)),
                            offer[:half], offer[half:], pause=0.3)
    assert answer.status == 201, answer.body[:300]
    assert answer.body.startswith(b"v=0") and answer.headers["location"].startswith(CALLS + "/")
    assert len(server.app[REGISTRY]) == 1


async def test_a_chunked_offer_and_a_client_secret_request_in_pieces_are_read_whole(serve: Server) -> None:
    server = await serve()
    offer = (await real_offer()).encode()
    body = chunked(offer, 300)
    answer = await exchange(server, request_head(server, CALLS, "application/sdp", None),
                            body[:400], body[400:], pause=0.2)
    assert answer.status == 201, answer.body[:300]
    request = json.dumps({"session": {"instructions": "Be brief."}}).encode()
    answer = await exchange(server, request_head(server, SECRETS, "application/json", len(request)),
                            request[:10], request[10:], pause=0.2)
    assert answer.status == 200, answer.body
    assert json.loads(answer.body)["session"]["instructions"] == "Be brief."


async def test_a_body_slower_than_the_timeout_gets_408_and_frees_its_slot(serve: Server) -> None:
    server = await serve(body_timeout=0.5)
    offer = (await real_offer()).encode()
    started = time.monotonic()
    answer = await exchange(server, request_head(server, CALLS, "application/sdp", len(offer)),
                            offer[:100], offer[100:], pause=2.0)
    took = answer.at - started
    assert (answer.status, answer.code) == (408, "request_timeout")
    assert 0.4 <= took < 1.5  # answered at the timeout, not when the rest arrived
    assert answer.headers.get("connection", "").lower() == "close"
    assert len(server.app[REGISTRY]) == 0
    # The same for a form and for a client secret request that never finish.
    for path, content_type in ((CALLS, FORM_TYPE), (SECRETS, "application/json")):
        answer = await exchange(server, request_head(server, path, content_type, 10_000), b"--" + BOUNDARY.encode())
        assert (answer.status, answer.code) == (408, "request_timeout"), path


async def test_a_form_with_too_many_parts_is_refused(serve: Server) -> None:
    server = await serve()
    offer = (await real_offer()).encode()
    parts = [("sdp", "application/sdp", offer), ("session", "application/json", b"{}")]
    parts += [(f"extra{i}", "text/plain", b"x") for i in range(MAX_FORM_PARTS - 1)]
    body = form(*parts)
    answer = await exchange(server, request_head(server, CALLS, FORM_TYPE, len(body)), body)
    assert (answer.status, answer.code) == (400, "too_many_parts")
    body = form(*parts[:MAX_FORM_PARTS])  # at the limit: a call
    answer = await exchange(server, request_head(server, CALLS, FORM_TYPE, len(body)), body)
    assert answer.status == 201, answer.body[:300]


async def test_an_oversized_form_is_413_from_its_length_or_while_it_arrives(serve: Server) -> None:
    server = await serve()
    offer = (await real_offer()).encode()
    part = b"x" * (60 * 1024)  # each part under limits.max_sdp_bytes (64 KiB), all of them over the total
    body = form(("sdp", "application/sdp", offer), *[(f"pad{i}", "text/plain", part) for i in range(3)])
    assert len(body) > 64 * 1024 + FORM_OVERHEAD_BYTES
    answer = await exchange(server, request_head(server, CALLS, FORM_TYPE, len(body)), body[:1000])
    assert (answer.status, answer.code) == (413, "body_too_large")  # from Content-Length: nothing read
    answer = await exchange(server, request_head(server, CALLS, FORM_TYPE, None), chunked(body))
    assert (answer.status, answer.code) == (413, "body_too_large")
    one_big = form(("sdp", "application/sdp", offer + b"a=x:" + b"y" * (65 * 1024) + b"\r\n"))
    answer = await exchange(server, request_head(server, CALLS, FORM_TYPE, None), chunked(one_big))
    assert (answer.status, answer.code) == (413, "sdp_too_large")
    assert len(server.app[REGISTRY]) == 0


# ----------------------------------------------------------------------------- hosts


async def test_a_rebinding_host_is_refused_before_anything_else(serve: Server) -> None:
    server = await serve()
    offer = (await real_offer()).encode()
    evil = f"evil.example:{server.port}"
    for path in (CALLS, SECRETS):
        answer = await exchange(server, request_head(server, path, "application/sdp", len(offer), host=evil,
                                                     Origin=f"http://{evil}"), offer)
        assert (answer.status, answer.code) == (403, "host_not_allowed"), path
        assert "access-control-allow-origin" not in answer.headers
    get = f"GET /metrics HTTP/1.1\nHost: {evil}\n"
    assert (await exchange(server, get)).status == 403
    assert len(server.app[REGISTRY]) == 0


async def test_local_hosts_and_configured_hosts_are_served(serve: Server) -> None:
    server = await serve()
    offer = (await real_offer()).encode()
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", f"[::1]:{server.port}", "192.0.2.7"):
        answer = await exchange(server, request_head(server, CALLS, "application/sdp", len(offer), host=host,
                                                     Origin=f"http://{host}"), offer)
        assert answer.status == 201, (host, answer.body[:200])
        assert answer.headers["access-control-allow-origin"] == f"http://{host}"  # same origin
    named = await serve(allowed_hosts=("gateway.example.com", "*.voice.example"))
    for host in ("gateway.example.com", "GATEWAY.example.com:8443", "a.voice.example"):
        answer = await exchange(named, request_head(named, CALLS, "application/sdp", len(offer), host=host,
                                                    Origin=f"https://{host}"), offer)
        assert answer.status == 201, host
    for host in ("voice.example", "gateway.example.com.evil.example"):
        answer = await exchange(named, request_head(named, CALLS, "application/sdp", len(offer), host=host), offer)
        assert (answer.status, answer.code) == (403, "host_not_allowed"), host
    anything = await serve(allowed_hosts=("*",))  # behind a proxy that checks Host itself
    answer = await exchange(anything, request_head(anything, CALLS, "application/sdp", len(offer), host="x.example"),
                            offer)
    assert answer.status == 201


def test_host_names_are_parsed_strictly() -> None:
    assert host_name("LocalHost:8080") == "localhost"
    assert host_name("[::1]:8080") == "::1" and host_name("[::1]") == "::1"
    assert host_name("example.com.") == "example.com"
    for malformed in ("", ":8080", "[::1", "[::1]x", "a:b:c", "host:80a"):
        assert host_name(malformed) is None, malformed
    policy = HostPolicy((), bind_host="gateway.lan")
    assert policy.allows("gateway.lan:8080") and policy.allows(None) and policy.allows("10.1.2.3:80")
    assert not policy.allows("127.0.0.1.nip.io") and not policy.allows("localhost.evil.example")
    assert HostPolicy((), bind_host="0.0.0.0").allows("localhost:8080")


def test_allowed_hosts_are_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.config import ConfigError
    from gateway.config.loader import ConfigSource, load_config

    config = load_config(ConfigSource(overrides={"server.allowed_hosts": "gw.example.com,*.example.org"}))
    assert config.server.allowed_hosts == ("gw.example.com", "*.example.org")
    for bad in ("http://gw.example.com", "gw.example.com:8080", "a b"):
        with pytest.raises(ConfigError, match=r"server\.allowed_hosts"):
            replace(ServerConfig(), allowed_hosts=(bad,))
