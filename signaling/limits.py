"""Per-client limits on placing calls: how many at once, how many still connecting, and how fast (429).

A *client* is the caller's IP address, or for IPv6 its /64 network (one
subscriber usually holds a whole /64). Behind a reverse proxy, list the proxy
in ``limits.trusted_proxies``: then the client is the last address of
``X-Forwarded-For`` that is not itself a trusted proxy.

* ``limits.max_calls_per_client`` (default: a quarter of ``limits.max_calls``,
  at least 1 — 4 of 16): live calls, plus calls being set up, per client →
  ``429 too_many_calls``. So no one address holds more than a quarter of the
  gateway; at ``max_calls`` or more it is the global limit that answers
  (``503 capacity``).
* ``limits.max_pending_calls_per_client`` (default 2): calls whose ICE/DTLS is
  not connected yet (and calls being set up) → ``429 too_many_pending_calls``.
  A call that never connects holds its slot for ``limits.ice_timeout_seconds``
  (10 s); a real caller connects within a second, so two are plenty, and an
  address that posts offers it never connects holds two slots, not a quarter
  of the gateway for the whole window. Off with ``max_calls_per_client = 0``.
* ``limits.calls_per_client_per_minute`` (default 60) with a burst of
  ``limits.call_burst_per_client`` (default 20): call attempts per client, a
  token bucket; every ``POST /v1/realtime/calls`` takes a token, whatever its
  outcome (so bad offers and bad keys are limited too) → ``429 rate_limited``.

A new call on the Realtime WebSocket (``GET /v1/realtime`` without ``call_id``) is limited the
same way; its request lasts as long as the call, so the call's id is settled when it is admitted
(the handler calls :data:`ADMITTED_KEY`'s function), not when the request ends.

0 turns a limit off. The state per client is small and bounded
(:data:`MAX_CLIENTS`; idle entries are forgotten first).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from gateway.config import LimitsConfig
from signaling.errors import ApiError, Handler
from signaling.internal import is_internal
from signaling.paths import CALLS_PATH, REALTIME_PATH, call_id_from_location
from signaling.service import REGISTRY, CallService

logger = logging.getLogger(__name__)

MAX_CLIENTS = 100_000
CONCURRENCY_RETRY_AFTER = 5
PENDING_RETRY_AFTER = 2  # a real caller's pending calls connect within a second

CallCheck = Callable[[str], bool]

#: On a WebSocket call's request: tell the limits the call's id once it is admitted.
ADMITTED_KEY: web.RequestKey[Callable[[str], None]] = web.RequestKey("call_admitted")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_key(address: str) -> str:
    """The client an address belongs to: the IPv4 address, or the IPv6 /64 network."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class ClientAddress:
    """The caller's address, from ``X-Forwarded-For`` only when the peer is a trusted proxy."""

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self._trusted: list[Network] = [ipaddress.ip_network(n, strict=False) for n in trusted_proxies]

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip().split("%", 1)[0])
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    def of(self, request: web.Request) -> str:
        peer = request.remote or "unknown"
        if not self._trusted or not self._is_trusted(peer):
            return peer
        hops = [hop.strip() for header in request.headers.getall(hdrs.X_FORWARDED_FOR, [])
                for hop in header.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return hop
        return hops[0] if hops else peer


def refilled(tokens: float, since: float, now: float, *, rate: float, burst: float) -> float:
    """A per-client token bucket's tokens at ``now``: ``rate`` a second added since ``since``, at most ``burst``."""
    return min(burst, tokens + (now - since) * rate)


def seconds_until_a_token(tokens: float, rate: float) -> int:
    """Whole seconds until a bucket holding ``tokens`` (< 1) has one: the ``Retry-After`` of a refusal."""
    return math.ceil((1.0 - tokens) / rate)


@dataclass
class _Client:
    tokens: float
    updated: float
    placing: int = 0  # calls being set up (their request is being answered)
    calls: set[str] = field(default_factory=set)  # calls admitted earlier, live or not (pruned lazily)


class ClientLimiter:
    """Concurrent calls, pending calls and call attempts per client (see the module doc)."""

    def __init__(self, config: LimitsConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        per_client = config.max_calls_per_client
        self.max_calls = per_client if per_client < config.max_calls else 0  # else the global limit answers
        pending = config.max_pending_calls_per_client if per_client else 0
        self.max_pending = pending if pending < (self.max_calls or config.max_calls) else 0
        self.rate = config.calls_per_client_per_minute / 60.0
        self.burst = float(config.call_burst_per_client)
        self._clock = clock
        self._clients: dict[str, _Client] = {}

    def __len__(self) -> int:
        return len(self._clients)

    @property
    def off(self) -> bool:
        return not (self.max_calls or self.max_pending or self.rate)

    def admit(self, client: str, *, call_alive: CallCheck, call_connected: CallCheck) -> _Client:
        """Take a token and a call slot for ``client``, or raise a 429 ApiError.

        ``call_alive`` says which of the calls admitted earlier are still live, ``call_connected``
        which of those have connected (ICE and DTLS up).
        """
        now = self._clock()
        state = self._clients.get(client)
        if state is None:
            self._forget_idle(call_alive)
            state = self._clients[client] = _Client(tokens=self.burst, updated=now)
        if self.rate > 0:
            state.tokens = refilled(state.tokens, state.updated, now, rate=self.rate, burst=self.burst)
            state.updated = now
            if state.tokens < 1.0:
                wait = seconds_until_a_token(state.tokens, self.rate)
                raise ApiError(429, "rate_limited", f"too many calls placed from this address; retry in {wait} s",
                               retry_after=wait)
            state.tokens -= 1.0
        if self.max_calls or self.max_pending:
            state.calls = {call_id for call_id in state.calls if call_alive(call_id)}
            if self.max_calls and len(state.calls) + state.placing >= self.max_calls:
                raise ApiError(429, "too_many_calls", f"at most {self.max_calls} calls at once from one address",
                               retry_after=CONCURRENCY_RETRY_AFTER)
            pending = state.placing + sum(1 for call_id in state.calls if not call_connected(call_id))
            if self.max_pending and pending >= self.max_pending:
                raise ApiError(429, "too_many_pending_calls", f"at most {self.max_pending} calls from one address "
                               "may be connecting at once; connect (ICE) the ones placed first",
                               retry_after=PENDING_RETRY_AFTER)
        state.placing += 1
        return state

    def settle(self, state: _Client, call_id: str | None) -> None:
        """The call admitted by ``admit`` was set up (``call_id``) or not (None)."""
        state.placing -= 1
        if call_id is not None and (self.max_calls or self.max_pending):
            state.calls.add(call_id)

    def _forget_idle(self, call_alive: Callable[[str], bool]) -> None:
        if len(self._clients) < MAX_CLIENTS:
            return
        now = self._clock()
        for key, state in list(self._clients.items()):
            full = self.rate <= 0 or refilled(state.tokens, state.updated, now, rate=self.rate,
                                              burst=self.burst) >= self.burst
            if full and not state.placing and not any(call_alive(c) for c in state.calls):
                del self._clients[key]
        while len(self._clients) >= MAX_CLIENTS * 0.9:  # still (nearly) full: forget the oldest entries
            del self._clients[next(iter(self._clients))]


class LimitStore(Protocol):
    """Where the per-client limits are counted: this process (:class:`LocalLimits`), or a store a cluster of
    gateways shares (``cluster.redis_url``: :class:`gateway.cluster.limits.RedisLimits`), so that an address
    holds ``max_calls_per_client`` calls in the whole cluster, not on each instance. ``admit`` raises a 429
    ``ApiError`` (or a 503 ``GatewayError`` when a shared store cannot be reached); its ticket goes to ``settle``."""

    @property
    def off(self) -> bool: ...

    async def admit(self, client: str, calls: CallService) -> object: ...

    async def settle(self, ticket: object, call_id: str | None) -> None: ...


class LocalLimits:
    """:class:`LimitStore` of one process: a :class:`ClientLimiter` asking this process's calls."""

    def __init__(self, config: LimitsConfig) -> None:
        self.limiter = ClientLimiter(config)

    @property
    def off(self) -> bool:
        return self.limiter.off

    async def admit(self, client: str, calls: CallService) -> object:
        return self.limiter.admit(client, call_alive=calls.has_call, call_connected=calls.is_connected)

    async def settle(self, ticket: object, call_id: str | None) -> None:
        assert isinstance(ticket, _Client)
        self.limiter.settle(ticket, call_id)


def limits_middleware(config: LimitsConfig, store: LimitStore | None = None) -> Middleware:
    """Applies the per-client limits to ``POST /v1/realtime/calls`` (counted in ``store``; default: here)."""
    limiter: LimitStore = store if store is not None else LocalLimits(config)
    addresses = ClientAddress(config.trusted_proxies)
    off = limiter.off

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else None
        offer = request.method == hdrs.METH_POST and path == CALLS_PATH
        socket = request.method == hdrs.METH_GET and path == REALTIME_PATH and "call_id" not in request.query
        if off or not (offer or socket) or is_internal(request):
            return await handler(request)
        address = addresses.of(request)
        try:
            ticket = await limiter.admit(client_key(address), request.app[REGISTRY])
        except ApiError as exc:
            logger.info("refused a call from %s: %s", address, exc.code)
            raise
        settling: list[asyncio.Task[None]] = []  # the one settle, awaited before the request ends

        def admitted(call_id: str | None) -> None:
            if not settling:
                settling.append(asyncio.ensure_future(limiter.settle(ticket, call_id)))

        request[ADMITTED_KEY] = admitted
        call_id = None
        try:
            response = await handler(request)
            if response.status == 201:
                call_id = call_id_from_location(response.headers.get(hdrs.LOCATION, ""))
            return response
        finally:
            admitted(call_id)
            await settling[0]

    return limit
