"""The call service of a cluster instance: its own calls, plus hang-ups forwarded to the instance holding a call.

``DELETE /v1/realtime/calls/{id}`` may reach any instance behind the load balancer. A call held here is hung
up here; otherwise the directory names the instance holding it and the request is forwarded there as a direct
HTTP ``DELETE`` with the cluster's internal token (``cluster.internal_token``, signaling/internal.py), bounded
by :data:`FORWARD_TIMEOUT_SECONDS`. Direct HTTP rather than Redis pub/sub because a hang-up is a request with
an answer: the caller learns whether the call existed (``204`` or ``404``) from the instance that held it, and
an owner that died is noticed (its directory entry and URL are gone, or it does not answer: ``503``) instead
of a message published to no one. The receiving instance has already authenticated the caller (a server key,
or the client secret that created the call, checked in the shared store), so the owner trusts the token alone.

Calls are registered in the directory as they are placed (a WebSocket call once it is admitted); a failed
write is logged and left to the next heartbeat (the call itself is fine). A sideband WebSocket
(``GET /v1/realtime?call_id=``) for a call held elsewhere is relayed to the instance holding it
(:mod:`signaling.socket_relay`, as a ``--workers`` front relays to its workers), with the internal token:
this instance checked the server key. A call in no directory entry, or whose instance stopped
heartbeating, is ``404 call_not_found``; an owner that does not answer the handshake, ``503``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from gateway.aio import TaskSet
from gateway.cluster.directory import CallDirectory
from gateway.errors import CallNotFound, GatewayError, Unavailable
from signaling.internal import internal_headers
from signaling.paths import call_location
from signaling.service import CallService, SocketRequest
from signaling.socket_relay import CALL_HEADER, connect_worker, proxy_socket

logger = logging.getLogger(__name__)

FORWARD_TIMEOUT_SECONDS = 5.0


class ClusterCalls:
    """:class:`signaling.service.CallService` over this instance's calls and the directory (see the module doc)."""

    def __init__(self, local: CallService, directory: CallDirectory, *, internal_token: str) -> None:
        self.local = local
        self.directory = directory
        self._headers = internal_headers(internal_token)
        self._http: aiohttp.ClientSession | None = None
        self._sockets: aiohttp.ClientSession | None = None  # relayed sidebands
        self._tasks = TaskSet("cluster calls")
        self.forwarded = 0
        self.on_forward: Callable[[], None] = lambda: None  # the metric (Cluster.count_in)

    async def create_call(self, offer_sdp: str, session: dict[str, Any] | None) -> tuple[str, str]:
        call_id, answer = await self.local.create_call(offer_sdp, session)
        await self._register(call_id)
        return call_id, answer

    async def serve_socket(self, request: web.Request, socket: SocketRequest) -> web.StreamResponse:
        """Serve the socket here; a new call's id goes into the directory once it is admitted."""
        if socket.kind == "sideband":
            if socket.call_id is None or self.local.has_call(socket.call_id):
                return await self.local.serve_socket(request, socket)
            return await self._relay_sideband(request, socket, socket.call_id)
        told = socket.admitted

        def admitted(call_id: str) -> None:
            self._tasks.create_task(self._register(call_id), name=f"cluster-register-{call_id}")
            if told is not None:
                told(call_id)

        return await self.local.serve_socket(request, dataclasses.replace(socket, admitted=admitted))

    async def _relay_sideband(self, request: web.Request, socket: SocketRequest, call_id: str) -> web.StreamResponse:
        """A sideband for a call held by another instance, relayed there (see the module doc)."""
        url = await self._owner_url(call_id)
        if self._sockets is None:  # no total timeout: a sideband stays attached as long as the call lasts
            self._sockets = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(
                total=None, connect=FORWARD_TIMEOUT_SECONDS, sock_connect=FORWARD_TIMEOUT_SECONDS))
        headers = {**self._headers, CALL_HEADER: call_id}
        protocols = (socket.protocol,) if socket.protocol else ()
        upstream = await connect_worker(self._sockets, url.rstrip("/") + request.path_qs, headers, protocols)
        logger.info("call %s: sideband relayed to the instance holding the call", call_id)
        return await proxy_socket(request, upstream, socket.protocol)

    async def _owner_url(self, call_id: str) -> str:
        """The URL of the other instance holding ``call_id``; CallNotFound when none does."""
        owner = await self.directory.owner(call_id)
        if owner is None or owner == self.directory.instance_id:
            raise CallNotFound(call_id)
        url = await self.directory.url_of(owner)
        if url is None:
            raise CallNotFound(call_id)  # its instance stopped heartbeating: the call went with it
        return url

    async def _register(self, call_id: str) -> None:
        try:
            await self.directory.register(call_id)
        except GatewayError:
            logger.warning("call %s: not in the directory yet (Redis); the next heartbeat writes it", call_id)

    async def hangup(self, call_id: str) -> None:
        if self.local.has_call(call_id):
            await self.local.hangup(call_id)
            try:  # before the 204: whoever the caller asks next no longer counts or finds the call
                await self.directory.forget(call_id)
            except GatewayError:
                logger.warning("call %s: ended, but its directory entry stays until its lease ends (Redis)", call_id)
            return
        await self._forward(call_id, await self._owner_url(call_id))

    async def _forward(self, call_id: str, url: str) -> None:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_SECONDS))
        self.forwarded += 1
        self.on_forward()
        try:
            async with self._http.delete(url.rstrip("/") + call_location(call_id), headers=self._headers) as reply:
                status = reply.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            logger.warning("call %s: forwarding the hang-up to %s failed: %r", call_id, url, exc)
            raise Unavailable("cluster_unavailable", "the instance holding the call did not answer; try again",
                              retry_after=2) from exc
        logger.info("call %s: hang-up forwarded to %s: HTTP %d", call_id, url, status)
        if status == 404:
            raise CallNotFound(call_id)
        if status >= 300:
            raise Unavailable("cluster_unavailable", f"the instance holding the call answered HTTP {status}",
                              retry_after=2)

    def has_call(self, call_id: str) -> bool:
        return self.local.has_call(call_id)

    def is_connected(self, call_id: str) -> bool:
        return self.local.is_connected(call_id)

    def validate_session(self, session: dict[str, Any] | None) -> dict[str, Any] | None:
        return self.local.validate_session(session)

    async def close(self) -> None:
        await self._tasks.close()
        for http in (self._http, self._sockets):
            if http is not None:
                await http.close()
        self._http = self._sockets = None
