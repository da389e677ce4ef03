"""Streaming HTTP for external agents: one POST, read as it arrives, every failure an AgentError.

A reply generator opens the request with :func:`post_stream` inside
:class:`failures`, and yields text as lines or chunks arrive. When the caller
barges in, the gateway closes the generator: the ``async with`` blocks exit,
the response is closed and with it the connection, so the upstream sees the
client leave at once (and an LLM server stops generating).

Each request has its own ``ClientSession``: nothing outlives the reply, and
redirects are not followed, so requests only ever go to configured URLs.

What went wrong stays on the server: the caller's ``error`` event carries a
stable code and a generic message (``the webhook agent is unreachable``), never
the upstream's URL, host, port or answer; those go to the log, with the call id
(the URL without its query string or credentials).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import aiohttp

from gateway.agents.base import AgentError, HistoryWindow
from gateway.config import AgentsConfig, LimitsConfig

logger = logging.getLogger(__name__)

MAX_ERROR_BODY = 2048
MAX_JSON_BODY = 1024 * 1024

#: What the caller is told for each code, after "the NAME agent"; the details are only logged.
PUBLIC_MESSAGES = {
    "agent_timeout": "did not answer in time",
    "agent_unreachable": "is unreachable",
    "agent_connection_failed": "connection failed",
    "agent_http_error": "answered with an HTTP error",
    "agent_bad_response": "sent an answer that could not be read",
    "agent_upstream_error": "reported an error",
}


@dataclass(frozen=True)
class UpstreamPolicy:
    connect_timeout: float = 5.0
    response_timeout: float = 15.0
    idle_timeout: float = 10.0
    apology: str = ""
    window: HistoryWindow = field(default_factory=HistoryWindow)  # how much history each request carries

    @classmethod
    def from_config(cls, config: AgentsConfig, limits: LimitsConfig | None = None) -> UpstreamPolicy:
        window = HistoryWindow() if limits is None else HistoryWindow(limits.max_agent_history_items,
                                                                      limits.max_agent_history_chars)
        return cls(config.connect_timeout_seconds, config.response_timeout_seconds, config.idle_timeout_seconds,
                   config.apology, window)


def loggable_url(url: str) -> str:
    """``url`` without its query string, fragment and credentials (which may hold secrets)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _classify(exc: Exception) -> tuple[str, str] | None:
    """The code and the detail (for the log) of a failure; None for an exception that is not the upstream's."""
    if isinstance(exc, AgentError):
        return exc.code, str(exc)
    if isinstance(exc, TimeoutError):  # also aiohttp's connect timeouts
        return "agent_timeout", "no answer in time"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "agent_unreachable", str(exc)
    if isinstance(exc, aiohttp.ClientError):
        return "agent_connection_failed", repr(exc)
    if isinstance(exc, ValueError):  # undecodable bytes, over-long lines
        return "agent_bad_response", f"a malformed stream: {exc}"
    return None


class failures:  # lower case: reads as ``async with failures(...)``
    """Turns whatever goes wrong talking to an upstream into an :class:`AgentError` with the apology.

    The error says only its code and a generic message; what happened, and where, is logged.
    """

    def __init__(self, what: str, policy: UpstreamPolicy, *, call_id: str = "", url: str = "") -> None:
        self._what = what
        self._apology = policy.apology
        self._call_id = call_id
        self._url = url

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if exc is None or not isinstance(exc, Exception):
            return  # success, cancellation (barge-in) and generator close pass through
        failure = _classify(exc)
        if failure is None:
            return
        code, detail = failure
        logger.warning("call %s: %s failed (%s) at %s: %s", self._call_id, self._what, code,
                       loggable_url(self._url), detail)
        public = f"{self._what} {PUBLIC_MESSAGES.get(code, 'failed')}"
        raise AgentError(code, public, apology=self._apology) from exc


class UpstreamStream:
    """An open streamed response: read it as lines or as text chunks."""

    def __init__(self, response: aiohttp.ClientResponse, policy: UpstreamPolicy) -> None:
        self.response = response
        self._idle = policy.idle_timeout

    @property
    def content_type(self) -> str:
        return self.response.content_type

    async def lines(self) -> AsyncIterator[str]:
        """Each line (without its line ending) as soon as it is complete."""
        while True:
            async with asyncio.timeout(self._idle):
                raw = await self.response.content.readline()
            if not raw:
                return
            yield raw.decode("utf-8").rstrip("\r\n")

    async def chunks(self) -> AsyncIterator[str]:
        """The body as text, in whatever pieces it arrives."""
        decoder = codecs.getincrementaldecoder("utf-8")()
        while True:
            async with asyncio.timeout(self._idle):
                raw = await self.response.content.readany()
            text = decoder.decode(raw, final=not raw)
            if text:
                yield text
            if not raw:
                return

    async def json(self) -> Any:
        """The whole body as JSON (a non-streamed answer)."""
        body = b""
        async for chunk in self._bytes():
            body += chunk
            if len(body) > MAX_JSON_BODY:
                raise AgentError("agent_bad_response", f"the JSON answer is larger than {MAX_JSON_BODY} bytes")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise AgentError("agent_bad_response", f"the answer is not valid JSON: {exc}") from exc

    async def _bytes(self) -> AsyncIterator[bytes]:
        while True:
            async with asyncio.timeout(self._idle):
                raw = await self.response.content.readany()
            if not raw:
                return
            yield raw


@asynccontextmanager
async def post_stream(url: str, payload: Mapping[str, Any], *, headers: Mapping[str, str], policy: UpstreamPolicy,
                      what: str) -> AsyncIterator[UpstreamStream]:
    """POST ``payload`` as JSON; yields the response once its status is a success."""
    timeout = aiohttp.ClientTimeout(total=None, connect=policy.connect_timeout, sock_connect=policy.connect_timeout)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with asyncio.timeout(policy.response_timeout):
            response = await http.post(url, json=payload, headers=dict(headers), allow_redirects=False)
        try:
            if not 200 <= response.status < 300:
                async with asyncio.timeout(policy.idle_timeout):
                    body = await response.content.read(MAX_ERROR_BODY)
                detail = body.decode("utf-8", "replace").strip()
                raise AgentError("agent_http_error",
                                 f"{what} answered HTTP {response.status}" + (f": {detail[:300]}" if detail else ""))
            yield UpstreamStream(response, policy)
        finally:
            response.close()  # drops the connection: an unfinished stream stops upstream too


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event (other fields and comments are ignored)."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)
