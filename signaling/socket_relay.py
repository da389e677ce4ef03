"""WebSockets relayed to the process that serves them: a front's to its workers, a cluster instance's to a peer.

A ``--workers`` front proxies every socket to a worker; a cluster instance proxies a sideband for a call
held by another instance to that instance (gateway/cluster/calls.py). Both use :func:`connect_worker`
and :func:`proxy_socket` with the internal token.

Signaling in the front checks the request (auth, the upgrade, a client secret) as a
single-process gateway would, then :meth:`gateway.app.workers.WorkerPool.serve_socket`
picks the worker — the least loaded accepting one for a new call, the owner of the call for
a sideband — and :func:`proxy_socket` connects to it with the internal token. The worker's
handshake answers before the front upgrades the caller, so a worker's refusal (503) moves on
to the next worker and any other refusal reaches the caller as JSON. Once both sockets are
open, messages are relayed one at a time in each direction (a slow reader slows the sender:
nothing queues in the front), and a close on either side closes the other with its code.

The session a new call starts with (a client secret's) travels in
:data:`signaling.realtime_socket.FORWARDED_SESSION_HEADER` (compact JSON, base64url): only the
front sets it, only with the internal token, so a worker reads it only from its front. aiohttp
limits a header to 8 KiB; a bound session beyond 6 KiB encoded is refused (``session_too_large``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

import aiohttp
from aiohttp import WSMsgType, web

from gateway.errors import CallNotFound, GatewayError, Unavailable

logger = logging.getLogger(__name__)

CALL_HEADER = "X-Voice-Gateway-Call"  # the call a sideband attaches to (for the front's 404)
MAX_RELAYED_MESSAGE_BYTES = 2 * 1024 * 1024


async def connect_worker(http: aiohttp.ClientSession, url: str, headers: dict[str, str],
                         protocols: tuple[str, ...]) -> aiohttp.ClientWebSocketResponse:
    """Open the worker's side; its refusals as GatewayErrors (503: Unavailable, the next worker is tried)."""
    try:
        return await http.ws_connect(url, headers=headers, protocols=protocols, autoping=True,
                                     max_msg_size=MAX_RELAYED_MESSAGE_BYTES)
    except aiohttp.WSServerHandshakeError as exc:
        if exc.status == 503:
            raise Unavailable("capacity", "the worker is at capacity", retry_after=2) from exc
        if exc.status == 404:
            raise CallNotFound(headers.get(CALL_HEADER, "")) from exc
        raise GatewayError("worker_refused", f"the worker refused the socket ({exc.status})") from exc
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise Unavailable("capacity", "a worker is unreachable", retry_after=2) from exc


def first_call_id(message: str) -> str | None:
    """The call id in a worker's first message on a new call (``session.created``), if it is one."""
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        event = json.loads(message)
        if event.get("type") == "session.created" and isinstance(event["session"].get("id"), str):
            return str(event["session"]["id"])
    return None


async def proxy_socket(request: web.Request, upstream: aiohttp.ClientWebSocketResponse, protocol: str | None, *,
                       on_first: Callable[[str], None] | None = None) -> web.WebSocketResponse:
    """Upgrade ``request`` and relay it to and from ``upstream`` until either side closes.

    ``on_first`` is told the first text message the worker sends (before it is relayed)."""
    client = web.WebSocketResponse(protocols=(protocol,) if protocol else (), max_msg_size=MAX_RELAYED_MESSAGE_BYTES,
                                   autoping=True)
    try:
        await client.prepare(request)
        if on_first is not None:
            first = await upstream.receive()
            if first.type == WSMsgType.TEXT:
                on_first(first.data)
                await client.send_str(first.data)
        await _relay_both(client, upstream)
    finally:
        await upstream.close()
        if not client.closed:
            await client.close(code=upstream.close_code or aiohttp.WSCloseCode.GOING_AWAY)
    return client


async def _relay_both(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse) -> None:
    up = asyncio.create_task(_relay(client, upstream), name="socket relay up")
    down = asyncio.create_task(_relay(upstream, client), name="socket relay down")
    try:
        await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)
    if upstream.closed and not client.closed:
        await client.close(code=upstream.close_code or aiohttp.WSCloseCode.OK)
    elif client.closed and not upstream.closed:
        await upstream.close(code=client.close_code or aiohttp.WSCloseCode.OK)


async def _relay(source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                 sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
    async for message in source:
        with contextlib.suppress(ConnectionResetError):
            if message.type == WSMsgType.TEXT:
                await sink.send_str(message.data)
            elif message.type == WSMsgType.BINARY:
                await sink.send_bytes(message.data)
            else:
                return
