"""A scripted HTTP upstream for agent tests: streams, fails or stalls, and records what the client did.

Each request takes the next behaviour from ``script`` (or ``default``). Every
exchange records the request, when the response ended, and when the client
went away before the end — that is how the tests see, on the server side, that
a barge-in closed the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from qa.caller import Caller
from tests.support.speech import utterance


@dataclass
class Exchange:
    path: str
    headers: dict[str, str]
    body: Any
    started_at: float
    streamed: list[str] = field(default_factory=list)  # the text pieces sent
    first_sent_at: float | None = None
    ended_at: float | None = None  # the whole response was sent
    disconnected_at: float | None = None  # the client left before the end

    @property
    def text(self) -> str:
        return "".join(self.streamed)


Behaviour = Callable[[web.Request, Exchange], Awaitable[web.StreamResponse]]


class ScriptedUpstream:
    def __init__(self, default: Behaviour) -> None:
        self.default = default
        self.url = ""  # set once it serves
        self.script: list[Behaviour] = []
        self.exchanges: list[Exchange] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = json.loads(raw) if raw else None
        exchange = Exchange(request.path, dict(request.headers), body, time.monotonic())
        self.exchanges.append(exchange)
        behaviour = self.script.pop(0) if self.script else self.default
        return await behaviour(request, exchange)

    async def wait_for(self, count: int, within: float = 30.0) -> Exchange:
        """The ``count``-th exchange (1-based), once it has arrived."""
        await wait_until(lambda: len(self.exchanges) >= count, within)
        return self.exchanges[count - 1]


async def wait_until(predicate: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------- encodings

def plain(text: str) -> str:
    return text


def ndjson(text: str) -> str:
    return json.dumps({"text": text}) + "\n"


def sse(text: str) -> str:
    return f"data: {json.dumps({'text': text})}\n\n"


def chat_sse(text: str) -> str:
    chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
    return f"data: {json.dumps(chunk)}\n\n"


# --------------------------------------------------------------- behaviours

def _gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def stream(pieces: Sequence[str], *, encode: Callable[[str], str] = plain, content_type: str = "text/plain",
           delay: float = 0.0, trailer: str = "", raw: Sequence[str] = ()) -> Behaviour:
    """Send each piece (encoded), ``delay`` seconds apart, then ``raw`` lines and ``trailer`` unencoded."""

    async def behave(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        try:
            for i, piece in enumerate(pieces):
                if i and delay:
                    await asyncio.sleep(delay)
                if _gone(request):
                    raise ConnectionResetError
                await response.write(encode(piece).encode())
                exchange.streamed.append(piece)
                exchange.first_sent_at = exchange.first_sent_at or time.monotonic()
            for line in (*raw, trailer):
                if line:
                    await response.write(line.encode())
            await response.write_eof()
            exchange.ended_at = time.monotonic()
        except ConnectionResetError:
            exchange.disconnected_at = time.monotonic()
        except asyncio.CancelledError:  # aiohttp's test server cancels handlers when the client leaves
            exchange.disconnected_at = time.monotonic()
            raise
        return response

    return behave


def status(code: int, body: str = "upstream exploded") -> Behaviour:
    async def behave(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        exchange.ended_at = time.monotonic()
        return web.Response(status=code, text=body)

    return behave


def stall(*, content_type: str = "text/plain", limit: float = 30.0) -> Behaviour:
    """Send the headers, then nothing until the client leaves."""

    async def behave(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        deadline = time.monotonic() + limit
        try:
            while not _gone(request) and time.monotonic() < deadline:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.02)
        finally:
            exchange.disconnected_at = time.monotonic()
        return response

    return behave


KEEPALIVE_S = 0.5  # a relay sends an SSE comment when the model has been silent this long
POLL_S = 0.05  # how often a relay waiting on the model looks whether its client left
HOLD_LIMIT_S = 60.0  # a held stream ends by itself after this long


def forward(base_url: str, *, delay: float = 0.0, endless: bool = False, hold: bool = False) -> Behaviour:
    """Relay a Chat Completions request to a real server, ``delay`` s per streamed event.

    The relay answers at once and, while the model is silent, sends an SSE comment every
    ``KEEPALIVE_S`` (as hosted APIs do while a model is busy): the gateway's idle timeout (2 s in
    these tests) then times the relay, not the CPU the local model gets; on a loaded two-core
    machine SmolLM2's first token alone took 5 s. ``endless`` bans SmolLM2's end tokens, so the model
    talks until ``max_tokens``. ``hold`` keeps the stream open after the model's last token (without
    its ``[DONE]``) until the client leaves: the stream is still open when speech starts, however
    slowly the machine runs.
    """

    async def behave(request: web.Request, exchange: Exchange) -> web.StreamResponse:
        body = dict(exchange.body)
        if endless:
            body["logit_bias"] = {"0": -100.0, "2": -100.0}  # <|endoftext|>, <|im_end|>
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(base_url.rstrip("/") + "/chat/completions", json=body) as upstream:
                    if upstream.status != 200:
                        error = {"error": {"message": f"the model answered HTTP {upstream.status}"}}
                        await response.write(f"data: {json.dumps(error)}\n\n".encode())
                    else:
                        await _relay(request, response, exchange, upstream.content, delay)
            if hold:
                await _hold(request, response)
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
            exchange.ended_at = time.monotonic()
        except ConnectionResetError:
            exchange.disconnected_at = time.monotonic()
        except asyncio.CancelledError:
            exchange.disconnected_at = time.monotonic()
            raise
        return response

    return behave


async def _relay(request: web.Request, response: web.StreamResponse, exchange: Exchange,
                 content: aiohttp.StreamReader, delay: float) -> None:
    """Copy the model's stream with keep-alives, up to (not including) its ``[DONE]``."""
    quiet_since = time.monotonic()
    async for line in _lines_or_silence(content):
        if _gone(request):
            raise ConnectionResetError
        if line is None:
            quiet_since = await _keep_alive(response, quiet_since)
            continue
        text = line.decode()
        if text.startswith("data:"):
            if "[DONE]" in text:
                return
            if delay:
                await asyncio.sleep(delay)
            delta = json.loads(text[5:])["choices"][0]["delta"].get("content")
            if delta:
                exchange.streamed.append(delta)
                exchange.first_sent_at = exchange.first_sent_at or time.monotonic()
            if _gone(request):
                raise ConnectionResetError
        await response.write(line)
        quiet_since = time.monotonic()


async def _hold(request: web.Request, response: web.StreamResponse) -> None:
    """Keep the stream open (keep-alives only) until the client leaves, or ``HOLD_LIMIT_S``."""
    quiet_since = time.monotonic()
    deadline = quiet_since + HOLD_LIMIT_S
    while time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        if _gone(request):
            raise ConnectionResetError
        quiet_since = await _keep_alive(response, quiet_since)


async def _lines_or_silence(content: aiohttp.StreamReader) -> AsyncIterator[bytes | None]:
    """Each line of ``content``; ``None`` after every ``POLL_S`` of waiting for one."""
    pending = asyncio.ensure_future(content.readline())
    try:
        while True:
            done, _ = await asyncio.wait({pending}, timeout=POLL_S)
            if not done:
                yield None
                continue
            line = pending.result()
            if not line:
                return
            yield line
            pending = asyncio.ensure_future(content.readline())
    finally:
        pending.cancel()


async def _keep_alive(response: web.StreamResponse, quiet_since: float) -> float:
    """Send an SSE comment if nothing was sent for ``KEEPALIVE_S``; when something was last sent."""
    if time.monotonic() - quiet_since < KEEPALIVE_S:
        return quiet_since
    await response.write(b": keep-alive\n\n")
    return time.monotonic()


async def say_through_failures(caller: Caller, upstream: ScriptedUpstream, clip_file: str, apology: str) -> str:
    """Ask once per scripted failure (HTTP 500, a malformed answer, a stall), then once more.

    Each failure must give its ``error`` event, a failed response whose transcript is the spoken
    ``apology``, and audible audio; the stalled exchange must be abandoned; the call goes on, and
    the transcript of the last, completed reply is returned.
    """
    await caller.wait_event("session.created")
    clip = utterance(clip_file)
    for code in ("agent_http_error", "agent_bad_response", "agent_timeout"):
        _, speech_end = await caller.say(clip.audio(), 16_000)
        error = await caller.wait_event("error", since=speech_end, timeout=30)
        assert error["error"]["code"] == code
        done = await caller.wait_event("response.done", since=speech_end, timeout=30)
        assert done["response"]["status"] == "failed"
        assert done["response"]["output"][0]["content"][0]["transcript"] == apology
        assert caller.received.audible_seconds(since=speech_end) >= 0.5, "the apology is heard"
    assert upstream.exchanges[2].disconnected_at is not None  # the stalled exchange was abandoned

    _, speech_end = await caller.say(clip.audio(), 16_000)
    done = await caller.wait_event("response.done", since=speech_end, timeout=30)
    assert done["response"]["status"] == "completed"
    return str(done["response"]["output"][0]["content"][0]["transcript"])


@contextlib.asynccontextmanager
async def scripted_upstream(default: Behaviour) -> AsyncIterator[ScriptedUpstream]:
    """A :class:`ScriptedUpstream` answering with ``default``, served on loopback for the block."""
    upstream = ScriptedUpstream(default)
    server = TestServer(upstream.app, host="127.0.0.1")
    await server.start_server()
    upstream.url = str(server.make_url("")).rstrip("/")
    try:
        yield upstream
    finally:
        await server.close()
