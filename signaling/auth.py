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
released and the token may be tried again until it expires. Minting, and
what the store holds, are in :mod:`signaling.client_secrets`; a token's bound
session and its pinned fields in :mod:`signaling.bound_session`. The store is this
process's, or one a cluster shares (``cluster.redis_url``: a token minted on one
instance places one call on any); a shared store that cannot be reached answers 503.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from gateway.config import AuthConfig, GatewayConfig
from gateway.errors import GatewayError
from signaling.bound_session import expand, without_pinned
from signaling.client_secrets import TOKEN_PREFIX, ClientSecret, ClientSecretStore, LocalSecrets, Minter, SecretStore
from signaling.errors import ApiError, Handler, error_response
from signaling.internal import is_internal
from signaling.paths import CALL_PATH, CALLS_PATH, CLIENT_SECRETS_PATH, call_id_from_location

logger = logging.getLogger(__name__)


def _unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)


class Authenticator:
    """Checks the ``Authorization`` header of signaling requests (see the module doc)."""

    def __init__(self, config: AuthConfig, *, store: SecretStore | None = None) -> None:
        self.config = config
        self._keys = [key.encode() for key in config.api_keys]
        self.store: SecretStore = store if store is not None else LocalSecrets(ClientSecretStore())

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


CLIENT_SECRET_KEY = web.RequestKey("client_secret", ClientSecret)  # the client secret a call is placed with


def bound_session(request: web.Request) -> dict[str, Any] | None:
    """The session settings bound to the client secret this call is placed with, if any."""
    secret = request.get(CLIENT_SECRET_KEY)
    return expand(secret.session) if secret is not None and secret.session is not None else None


def merge_sessions(base: dict[str, Any] | None, update: dict[str, Any] | None) -> dict[str, Any] | None:
    """``update`` applied over ``base``, objects merged key by key (the offer's session over the token's) —
    except the fields ``base`` pins (``gateway.pinned``): they keep the token's values, and its pins stand."""
    if base is None or update is None:
        return update if base is None else base
    pinned = base.get("gateway", {}).get("pinned", []) if isinstance(base.get("gateway"), dict) else []
    return _merge(base, without_pinned(update, pinned))


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        old = merged.get(key)
        merged[key] = _merge(old, value) if isinstance(old, dict) and isinstance(value, dict) else value
    return merged


def auth_middleware(config: GatewayConfig, minter: Minter) -> Middleware:
    """Checks credentials on the signaling routes (see the module doc), and the mint rate of client secrets."""
    authenticator = Authenticator(config.auth, store=minter.secrets)
    if not authenticator.keys_required and config.server.host not in ("127.0.0.1", "::1", "localhost"):
        logger.warning("no API keys are configured (auth.api_keys): anyone who reaches %s can place calls",
                       config.server.host)

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        resource = request.match_info.route.resource
        path = resource.canonical if resource is not None else None
        if path not in (CALLS_PATH, CALL_PATH, CLIENT_SECRETS_PATH) or is_internal(request):
            return await handler(request)
        try:
            if request.method == hdrs.METH_POST and path == CALLS_PATH:
                return await _place_call(authenticator, request, handler)
            if request.method == hdrs.METH_DELETE and path == CALL_PATH:
                credential = bearer(request)
                if authenticator.keys_required and not await _placed_by(authenticator, credential,
                                                                         request.match_info["call_id"]):
                    authenticator.require_server_key(credential)
            elif request.method == hdrs.METH_POST and path == CLIENT_SECRETS_PATH:
                await minter.rate.take(minter.client(request))  # before the key: wrong keys are throttled too
                authenticator.require_server_key(bearer(request))
        except ApiError as exc:
            if exc.status != 401:
                logger.info("refused %s %s from %s: %s", request.method, request.path, request.remote, exc.code)
                raise
            logger.info("refused %s %s from %s: %s", request.method, request.path, request.remote, exc.code)
            response = error_response(401, exc.error_type, exc.code, exc.message)
            response.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="voice-gateway"'
            return response
        return await handler(request)

    return authenticate


async def _placed_by(authenticator: Authenticator, credential: str | None, call_id: str) -> bool:
    """Whether ``credential`` is the client secret that placed ``call_id`` (it may hang the call up)."""
    return credential is not None and credential.startswith(TOKEN_PREFIX) and await authenticator.store.owns(
        credential, call_id)


async def _place_call(authenticator: Authenticator, request: web.Request, handler: Handler) -> web.StreamResponse:
    credential = bearer(request)
    if credential is None or not credential.startswith(TOKEN_PREFIX) or (
            not authenticator.keys_required and not await authenticator.store.knows(credential)):
        # Without API keys the gateway is open: a token it never minted (an SDK's placeholder) is ignored.
        authenticator.require_server_key(credential)
        return await handler(request)
    store = authenticator.store
    secret = await store.claim(credential)
    request[CLIENT_SECRET_KEY] = secret
    try:
        response = await handler(request)
    except BaseException:
        await settle_secret(store.release(secret))
        raise
    call_id = call_id_from_location(response.headers.get(hdrs.LOCATION, "")) if response.status == 201 else None
    await settle_secret(store.consume(secret, call_id) if call_id is not None else store.release(secret))
    return response


async def settle_secret(step: Awaitable[None]) -> None:
    """Record a claimed secret's outcome. A shared store that fails here is logged, not raised: the call was
    already placed (or refused) and the caller gets that answer; the claim then stays, so the token is spent."""
    try:
        await step
    except GatewayError as exc:
        logger.warning("client secret: its outcome was not recorded (%s): the token stays spent", exc.code)
