"""Who may place calls: server API keys and ephemeral client secrets (``ek_…``), as in OpenAI's API.

* ``auth.api_keys``: when any is configured, ``POST /v1/realtime/calls``,
  ``DELETE /v1/realtime/calls/{id}`` and ``POST /v1/realtime/client_secrets``
  need ``Authorization: Bearer KEY``. Keys are compared in constant time
  (:func:`hmac.compare_digest`, against every key).
* ``POST /v1/realtime/client_secrets`` (a server key required) mints an
  ``ek_…`` token that places exactly one call before it expires
  (``auth.client_secret_ttl_seconds``, default 60 s), optionally with session
  settings bound to it. A browser gets one from the app's own server, so the
  server key never reaches the browser. An expired or reused token is refused
  with 401, and so is an unknown one when server keys are configured; without
  them the gateway is open anyway, and a token it never minted (browser SDKs
  send placeholder ``ek_`` keys) counts as no credential. The token may also
  hang up the call it created.

A token is *claimed* while its call is being set up and *used* once the call
exists; if setting the call up fails (a bad offer, no capacity), the claim is
released and the token may be tried again until it expires. Only a SHA-256
digest of each token is kept.
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
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from gateway.config import AuthConfig, GatewayConfig
from signaling.errors import ApiError, Handler, error_response
from signaling.internal import is_internal
from signaling.paths import CALL_PATH, CALLS_PATH, CLIENT_SECRETS_PATH, call_id_from_location
from signaling.service import REGISTRY

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "ek_"
#: Tokens minted and not yet forgotten; minting beyond it is refused with 429.
MAX_CLIENT_SECRETS = 10_000
#: Expired and used tokens are remembered this long, so that reuse and expiry are told apart from forgery.
RETAIN_SECONDS = 300.0
MAX_BODY_BYTES = 64 * 1024


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)


@dataclass
class ClientSecret:
    """One minted token (its digest, never the token itself)."""

    digest: bytes
    created_at: float  # unix time
    expires_at: float
    session: dict[str, Any] | None
    state: str = "unused"  # "unused" → "claimed" (its call is being set up) → "used"
    call_id: str | None = None  # the call it created


class ClientSecretStore:
    """Minted ``ek_`` tokens: each places one call before it expires."""

    def __init__(self, *, clock: Callable[[], float] = time.time, capacity: int = MAX_CLIENT_SECRETS) -> None:
        self._clock = clock
        self._capacity = capacity
        self._secrets: dict[bytes, ClientSecret] = {}

    def __len__(self) -> int:
        return len(self._secrets)

    def mint(self, ttl_seconds: float, session: dict[str, Any] | None = None, *,
             call_alive: Callable[[str], bool] = lambda _call_id: False) -> tuple[str, ClientSecret]:
        """A new token; ``call_alive`` says which calls are live (their tokens may still hang them up)."""
        self._prune(call_alive)
        if len(self._secrets) >= self._capacity:
            raise ApiError(429, "too_many_client_secrets", "too many unused client secrets; try again later",
                           retry_after=max(1, math.ceil(ttl_seconds)))
        value = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._clock()
        secret = ClientSecret(_digest(value), now, now + ttl_seconds, session)
        self._secrets[secret.digest] = secret
        return value, secret

    def knows(self, value: str) -> bool:
        """Whether ``value`` was minted here (used, expired or not)."""
        return _digest(value) in self._secrets

    def claim(self, value: str) -> ClientSecret:
        """The secret for ``value``, now claimed for one call; or a 401 saying why not."""
        secret = self._secrets.get(_digest(value))
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
        secret = self._secrets.get(_digest(value))
        return secret is not None and secret.call_id is not None and hmac.compare_digest(secret.call_id, call_id)

    def _prune(self, call_alive: Callable[[str], bool]) -> None:
        horizon = self._clock() - RETAIN_SECONDS
        stale = [digest for digest, secret in self._secrets.items()
                 if secret.expires_at < horizon and not (secret.call_id and call_alive(secret.call_id))]
        for digest in stale:
            del self._secrets[digest]


class Authenticator:
    """Checks the ``Authorization`` header of signaling requests (see the module doc)."""

    def __init__(self, config: AuthConfig, *, store: ClientSecretStore | None = None) -> None:
        self.config = config
        self._keys = [key.encode() for key in config.api_keys]
        self.store = store or ClientSecretStore()

    @property
    def keys_required(self) -> bool:
        return bool(self._keys)

    def is_server_key(self, credential: str | None) -> bool:
        if credential is None or not self._keys:
            return False
        given = credential.encode("utf-8", "surrogatepass")
        matched = False
        for key in self._keys:  # every key, so the time taken does not say which one matched
            matched |= hmac.compare_digest(given, key)
        return matched

    def require_server_key(self, credential: str | None) -> None:
        if not self._keys:
            return
        if credential is None:
            raise _unauthorized("missing_api_key", "an API key is required: send 'Authorization: Bearer KEY'")
        if not self.is_server_key(credential):
            raise _unauthorized("invalid_api_key", "the API key is not valid")


def bearer(request: web.Request) -> str | None:
    """The credential of ``Authorization: Bearer …`` (None when absent or not a bearer credential)."""
    header = request.headers.get(hdrs.AUTHORIZATION, "")
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        return None
    return credential


AUTH_KEY = web.RequestKey("authenticator", Authenticator)
CLIENT_SECRET_KEY = web.RequestKey("client_secret", ClientSecret)  # the client secret a call is placed with


def call_alive(request: web.Request, call_id: str) -> bool:
    """Whether the call ``call_id`` is live (asked of the app's call service)."""
    return request.app[REGISTRY].has_call(call_id)


def bound_session(request: web.Request) -> dict[str, Any] | None:
    """The session settings bound to the client secret this call is placed with, if any."""
    secret = request.get(CLIENT_SECRET_KEY)
    return secret.session if secret is not None else None


def merge_sessions(base: dict[str, Any] | None, update: dict[str, Any] | None) -> dict[str, Any] | None:
    """``update`` applied over ``base``, objects merged key by key (the offer's session over the token's)."""
    if base is None or update is None:
        return update if base is None else base
    merged = dict(base)
    for key, value in update.items():
        old = merged.get(key)
        merged[key] = merge_sessions(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return merged


def auth_middleware(config: GatewayConfig) -> Middleware:
    """Checks credentials on the signaling routes (see the module doc)."""
    authenticator = Authenticator(config.auth)
    if not authenticator.keys_required and config.server.host not in ("127.0.0.1", "::1", "localhost"):
        logger.warning("no API keys are configured (auth.api_keys): anyone who reaches %s can place calls",
                       config.server.host)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[AUTH_KEY] = authenticator
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else None
        if path not in (CALLS_PATH, CALL_PATH, CLIENT_SECRETS_PATH) or is_internal(request):
            return await handler(request)
        try:
            if request.method == hdrs.METH_POST and path == CALLS_PATH:
                return await _place_call(authenticator, request, handler)
            if request.method == hdrs.METH_DELETE and path == CALL_PATH:
                credential = bearer(request)
                if authenticator.keys_required and not (
                        credential is not None and authenticator.store.owns(credential, request.match_info["call_id"])):
                    authenticator.require_server_key(credential)
            elif request.method == hdrs.METH_POST and path == CLIENT_SECRETS_PATH:
                authenticator.require_server_key(bearer(request))
        except ApiError as exc:
            if exc.status != 401:
                raise
            logger.info("refused %s %s from %s: %s", request.method, request.path, request.remote, exc.code)
            response = error_response(401, exc.error_type, exc.code, exc.message)
            response.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="voice-gateway"'
            return response
        return await handler(request)

    return authenticate


async def _place_call(authenticator: Authenticator, request: web.Request, handler: Handler) -> web.StreamResponse:
    credential = bearer(request)
    anonymous = not authenticator.keys_required and credential is not None and not authenticator.store.knows(credential)
    if credential is None or not credential.startswith(TOKEN_PREFIX) or anonymous:
        # Without API keys the gateway is open: a token it never minted (an SDK's placeholder) is ignored.
        authenticator.require_server_key(credential)
        return await handler(request)
    secret = authenticator.store.claim(credential)
    request[CLIENT_SECRET_KEY] = secret
    try:
        response = await handler(request)
    except BaseException:
        authenticator.store.release(secret)
        raise
    call_id = call_id_from_location(response.headers.get(hdrs.LOCATION, "")) if response.status == 201 else None
    if call_id is not None:
        authenticator.store.consume(secret, call_id)
    else:
        authenticator.store.release(secret)
    return response


# ------------------------------------------------------------------ minting


async def create_client_secret(request: web.Request) -> web.Response:
    """``POST /v1/realtime/client_secrets``: a new ``ek_`` token (the middleware checked the server key)."""
    authenticator = request[AUTH_KEY]
    config = authenticator.config
    body = await request.content.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large", f"the request body is larger than {MAX_BODY_BYTES} bytes")
    request_body = _json_object(body)
    ttl = _ttl(request_body.get("expires_after"), config)
    session = request_body.get("session")
    if session is not None and not isinstance(session, dict):
        raise ApiError(400, "invalid_session", "session must be a JSON object")
    effective = _effective_session(request, session)
    value, secret = authenticator.store.mint(ttl, session, call_alive=lambda call_id: call_alive(request, call_id))
    logger.info("client secret minted (expires in %.0f s, %d outstanding)", ttl, len(authenticator.store))
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


def _effective_session(request: web.Request, session: dict[str, Any] | None) -> dict[str, Any]:
    """The session a call placed with the token starts with.

    Checked now when the call service can (this process has the engines: it knows the voices and agents);
    in any case checked again when the call is placed.
    """
    effective = request.app[REGISTRY].validate_session(session)
    if effective is None:  # a front process, or models still loading
        return {"type": "realtime", "object": "realtime.session", **(session or {})}
    return effective
