"""Ephemeral client secrets (``ek_…``): minting them, and the store that remembers them.

``POST /v1/realtime/client_secrets`` (a server key required when keys are
configured: signaling/auth.py) mints a token that places exactly one call
before it expires, optionally with a session bound to it
(signaling/bound_session.py). What one client — an IP address, an IPv6 /64
(signaling/limits.py :func:`client_key`) — can make the gateway hold is bounded:

* ``limits.client_secrets_per_client_per_minute`` (default 60) with a burst of
  ``limits.client_secret_burst_per_client`` (20): mint requests per client,
  refused ones too (so wrong keys are throttled) → ``429 rate_limited``;
* ``limits.max_client_secrets_per_client`` (100): unused, unexpired tokens per
  client → ``429 too_many_client_secrets`` — so filling the store takes
  :data:`MAX_CLIENT_SECRETS` / 100 clients, not one;
* the store: :data:`MAX_CLIENT_SECRETS` tokens. Used and expired ones are kept
  :data:`RETAIN_SECONDS` only to tell reuse and expiry from forgery, and are
  forgotten first when it is full; only unused, unexpired ones (and used ones
  whose call is live: they may hang it up) fill it;
* bound sessions: compact bytes, identical ones stored once, at most
  :data:`MAX_SESSION_BYTES` in all → ``429 too_many_client_secrets``.

Measured with tracemalloc (tests/security/test_auth.py): a token without a
session retains about 0.4 KB; with a 64 KiB request body of junk around its
session, what it keeps is the session's fields alone (before: ~1.6 MB of parsed
JSON per token, 16 GB for a full store). Only SHA-256 digests of tokens are kept.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from gateway.config import AuthConfig, LimitsConfig
from signaling.body import read_body
from signaling.bound_session import compact, pinned_fields, with_pins
from signaling.errors import ApiError
from signaling.limits import ClientAddress, client_key, refilled, seconds_until_a_token
from signaling.service import REGISTRY

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "ek_"
#: Tokens remembered at most; minting beyond it is refused with 429.
MAX_CLIENT_SECRETS = 10_000
#: Expired and used tokens are remembered this long (unless room is needed), to tell reuse and expiry from forgery.
RETAIN_SECONDS = 300.0
MAX_BODY_BYTES = 64 * 1024
#: Bound sessions held at most, in bytes (identical sessions count once).
MAX_SESSION_BYTES = 32 * 1024 * 1024
#: Per-client mint-rate state kept at most (idle entries are forgotten first).
MAX_RATE_CLIENTS = 100_000

CallAlive = Callable[[str], bool]


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)


@dataclass(slots=True)
class ClientSecret:
    """One minted token (its digest, never the token itself)."""

    digest: bytes
    created_at: float  # unix time
    expires_at: float
    session: bytes | None  # compact JSON (signaling/bound_session.py), shared with identical sessions
    client: str = ""  # who minted it (client_key)
    state: str = "unused"  # "unused" → "claimed" (its call is being set up) → "used"
    call_id: str | None = None  # the call it created


class ClientSecretStore:
    """Minted ``ek_`` tokens: each places one call before it expires (see the module doc)."""

    def __init__(self, *, clock: Callable[[], float] = time.time, capacity: int = MAX_CLIENT_SECRETS,
                 per_client: int = 0, session_bytes: int = MAX_SESSION_BYTES) -> None:
        self._clock = clock
        self._capacity = capacity
        self._per_client = per_client
        self._session_budget = session_bytes
        self._secrets: dict[bytes, ClientSecret] = {}
        self._sessions: dict[bytes, list[Any]] = {}  # compact session → [the shared bytes, tokens holding it]
        self.session_bytes = 0

    def __len__(self) -> int:
        return len(self._secrets)

    def mint(self, ttl_seconds: float, session: bytes | None = None, *, client: str = "",
             call_alive: CallAlive = lambda _call_id: False) -> tuple[str, ClientSecret]:
        """A new token for ``client``; ``call_alive`` says which calls are live (their tokens may hang them up)."""
        now = self._clock()
        self._forget(lambda s: s.expires_at < now - RETAIN_SECONDS, call_alive)
        retry_after = max(1, math.ceil(ttl_seconds))
        if self._per_client:
            mine = [s.expires_at for s in self._secrets.values() if s.client == client and self._live(s, now)]
            if len(mine) >= self._per_client:
                raise ApiError(429, "too_many_client_secrets", f"at most {self._per_client} unused client secrets "
                               "per address", retry_after=max(1, math.ceil(min(mine) - now)))
        if len(self._secrets) >= self._capacity:
            self._forget(lambda s: not self._live(s, now), call_alive, room=1)
        if len(self._secrets) >= self._capacity:
            raise ApiError(429, "too_many_client_secrets", "too many unused client secrets; try again later",
                           retry_after=retry_after)
        shared = self._share(session, now, call_alive, retry_after)
        value = TOKEN_PREFIX + secrets.token_urlsafe(32)
        secret = ClientSecret(digest(value), now, now + ttl_seconds, shared, client)
        self._secrets[secret.digest] = secret
        return value, secret

    def knows(self, value: str) -> bool:
        """Whether ``value`` was minted here (used, expired or not)."""
        return digest(value) in self._secrets

    def claim(self, value: str) -> ClientSecret:
        """The secret for ``value``, now claimed for one call; or a 401 saying why not."""
        secret = self._secrets.get(digest(value))
        if secret is None:
            raise _unauthorized("invalid_api_key", "the client secret is not valid")
        if secret.state != "unused":
            raise _unauthorized("client_secret_used", "the client secret was already used for a call; "
                                "mint a new one for each call")
        if self._clock() >= secret.expires_at:
            raise _unauthorized("client_secret_expired", "the client secret has expired; mint a new one")
        secret.state = "claimed"
        return secret

    def release(self, secret: ClientSecret) -> None:
        """The claimed call was not set up: the secret may be tried again (until it expires)."""
        if secret.state == "claimed":
            secret.state = "unused"

    def consume(self, secret: ClientSecret, call_id: str) -> None:
        secret.state, secret.call_id = "used", call_id

    def owns(self, value: str, call_id: str) -> bool:
        """Whether ``value`` is the token that created ``call_id``."""
        secret = self._secrets.get(digest(value))
        return secret is not None and secret.call_id is not None and hmac.compare_digest(secret.call_id, call_id)

    @staticmethod
    def _live(secret: ClientSecret, now: float) -> bool:
        """Unused (or claimed) and unexpired: it still fills the store."""
        return secret.state != "used" and secret.expires_at > now

    def _share(self, session: bytes | None, now: float, call_alive: CallAlive, retry_after: int) -> bytes | None:
        """``session`` as stored: one copy of each distinct session, within :data:`MAX_SESSION_BYTES`."""
        if session is None:
            return None
        held = self._sessions.get(session)
        if held is None:
            if self.session_bytes + len(session) > self._session_budget:
                self._forget(lambda s: not self._live(s, now), call_alive, room=0, bytes_needed=len(session))
            if self.session_bytes + len(session) > self._session_budget:
                raise ApiError(429, "too_many_client_secrets", "too many client secrets with bound sessions; try "
                               "again later", retry_after=retry_after)
            held = self._sessions[session] = [session, 0]
            self.session_bytes += len(session)
        held[1] += 1
        shared: bytes = held[0]
        return shared

    def _forget(self, stale: Callable[[ClientSecret], bool], call_alive: CallAlive, *, room: int | None = None,
                bytes_needed: int = 0) -> None:
        """Forget ``stale`` tokens whose call is not live, oldest first; with ``room``, only until there is room
        for that many more tokens (and ``bytes_needed`` more session bytes)."""
        for key, secret in list(self._secrets.items()):
            if room is not None and len(self._secrets) + room <= self._capacity and (
                    self.session_bytes + bytes_needed <= self._session_budget):
                return
            if secret.state == "claimed" or not stale(secret) or (secret.call_id and call_alive(secret.call_id)):
                continue
            del self._secrets[key]
            if secret.session is not None:
                held = self._sessions[secret.session]
                held[1] -= 1
                if not held[1]:
                    del self._sessions[secret.session]
                    self.session_bytes -= len(secret.session)


class SecretStore(Protocol):
    """Where client secrets live: this process (:class:`LocalSecrets`), or a store a cluster of gateways shares
    (``cluster.redis_url``: :class:`gateway.cluster.secrets.RedisSecrets`), so that a token minted on one instance
    places exactly one call on any. A store that cannot be reached raises a 503 ``GatewayError`` at once."""

    async def mint(self, ttl_seconds: float, session: bytes | None, *, client: str,
                   call_alive: CallAlive) -> tuple[str, ClientSecret]: ...

    async def knows(self, value: str) -> bool: ...

    async def claim(self, value: str) -> ClientSecret: ...

    async def release(self, secret: ClientSecret) -> None: ...

    async def consume(self, secret: ClientSecret, call_id: str) -> None: ...

    async def owns(self, value: str, call_id: str) -> bool: ...


class LocalSecrets:
    """:class:`SecretStore` of one process: a :class:`ClientSecretStore` (its calls never wait)."""

    def __init__(self, store: ClientSecretStore) -> None:
        self.store = store

    async def mint(self, ttl_seconds: float, session: bytes | None, *, client: str,
                   call_alive: CallAlive) -> tuple[str, ClientSecret]:
        return self.store.mint(ttl_seconds, session, client=client, call_alive=call_alive)

    async def knows(self, value: str) -> bool:
        return self.store.knows(value)

    async def claim(self, value: str) -> ClientSecret:
        return self.store.claim(value)

    async def release(self, secret: ClientSecret) -> None:
        self.store.release(secret)

    async def consume(self, secret: ClientSecret, call_id: str) -> None:
        self.store.consume(secret, call_id)

    async def owns(self, value: str, call_id: str) -> bool:
        return self.store.owns(value, call_id)


class MintRate:
    """Mint requests per client: a token bucket each (``limits.client_secrets_per_client_per_minute``)."""

    def __init__(self, config: LimitsConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = config.client_secrets_per_client_per_minute / 60.0
        self.burst = float(config.client_secret_burst_per_client)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client → (tokens, when)

    def take(self, client: str) -> None:
        """One mint request from ``client``, or a ``429 rate_limited``."""
        if self.rate <= 0:
            return
        now = self._clock()
        tokens, when = self._buckets.pop(client, (self.burst, now))  # popped: re-inserted as the newest
        tokens = refilled(tokens, when, now, rate=self.rate, burst=self.burst)
        if len(self._buckets) >= MAX_RATE_CLIENTS:
            self._forget_idle(now)
        self._buckets[client] = (max(0.0, tokens - 1.0), now)
        if tokens < 1.0:
            wait = seconds_until_a_token(tokens, self.rate)
            raise ApiError(429, "rate_limited", f"too many client secrets requested from this address; retry in "
                           f"{wait} s", retry_after=wait)

    def _forget_idle(self, now: float) -> None:
        for client, (tokens, when) in list(self._buckets.items()):
            if refilled(tokens, when, now, rate=self.rate, burst=self.burst) >= self.burst:
                del self._buckets[client]
        while len(self._buckets) >= MAX_RATE_CLIENTS * 0.9:  # still (nearly) full: the least recent go
            del self._buckets[next(iter(self._buckets))]


class MintRateStore(Protocol):
    """Where the mint rate is counted: this process (:class:`LocalMintRate`) or a cluster's Redis
    (:class:`gateway.cluster.limits.RedisMintRate`). ``take`` raises ``429 rate_limited`` (503 without Redis)."""

    async def take(self, client: str) -> None: ...


class LocalMintRate:
    """:class:`MintRateStore` of one process: a :class:`MintRate`."""

    def __init__(self, rate: MintRate) -> None:
        self.rate = rate

    async def take(self, client: str) -> None:
        self.rate.take(client)


class Minter:
    """What minting needs: the store, the per-client rate, who the client is, the lifetimes.

    ``secrets`` is where tokens live and ``rate`` where the mint rate is counted (default: in this
    process, :attr:`store` and a :class:`MintRate`; a cluster shares both in Redis).
    """

    def __init__(self, auth: AuthConfig, limits: LimitsConfig, store: ClientSecretStore | None = None, *,
                 secrets: SecretStore | None = None, rate: MintRateStore | None = None) -> None:
        self.auth = auth
        if store is None:
            store = ClientSecretStore(per_client=limits.max_client_secrets_per_client)
        self.store = store
        self.secrets: SecretStore = secrets if secrets is not None else LocalSecrets(store)
        self.rate: MintRateStore = rate if rate is not None else LocalMintRate(MintRate(limits))
        self._addresses = ClientAddress(limits.trusted_proxies)

    def client(self, request: web.Request) -> str:
        return client_key(self._addresses.of(request))


#: The app's minter (set by :func:`signaling.middlewares.signaling_app`).
MINTER = web.AppKey("client_secret_minter", Minter)


async def create_client_secret(request: web.Request) -> web.Response:
    """``POST /v1/realtime/client_secrets``: a new ``ek_`` token (the middleware checked the key and the rate)."""
    minter = request.app[MINTER]
    request_body = _json_object(await read_body(request, MAX_BODY_BYTES, code="body_too_large"))
    ttl = _ttl(request_body.get("expires_after"), minter.auth)
    session = request_body.get("session")
    if session is not None and not isinstance(session, dict):
        raise ApiError(400, "invalid_session", "session must be a JSON object")
    if session is not None:
        session = with_pins(session, pinned_fields(session))
    effective = request.app[REGISTRY].validate_session(session)  # None: not known here (a front, models loading)
    stored = compact(session, effective) if session is not None else None
    registry = request.app[REGISTRY]
    value, secret = await minter.secrets.mint(ttl, stored, client=minter.client(request), call_alive=registry.has_call)
    logger.info("client secret minted (expires in %.0f s)", ttl)
    if effective is None:
        effective = {"type": "realtime", "object": "realtime.session", **(session or {})}
    return web.json_response({"value": value, "expires_at": int(secret.expires_at), "session": effective})


def _json_object(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise ApiError(400, "invalid_json", "the request body must be a JSON object")
    return value


def _ttl(expires_after: Any, config: AuthConfig) -> float:
    if expires_after is None:
        return config.client_secret_ttl_seconds
    if not isinstance(expires_after, dict) or expires_after.get("anchor", "created_at") != "created_at":
        raise ApiError(400, "invalid_value", "expires_after must be {\"anchor\": \"created_at\", \"seconds\": N}")
    seconds = expires_after.get("seconds", config.client_secret_ttl_seconds)
    longest = config.client_secret_max_ttl_seconds
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 1 <= seconds <= longest:
        raise ApiError(400, "invalid_value", f"expires_after.seconds must be a number from 1 to {longest:g}")
    return float(seconds)

