"""``GET /v1/realtime``: the Realtime WebSocket, and sideband control of a live call (``?call_id=rtc_…``).

Signaling's part is the HTTP request; everything here happens before the upgrade, so every
refusal is JSON with its status:

* not a WebSocket upgrade → ``426 websocket_required``;
* credentials, as OpenAI takes them: ``Authorization: Bearer KEY`` (a server key or an ``ek_``
  client secret), or — browsers cannot set headers on a WebSocket — the subprotocols
  ``realtime, openai-insecure-api-key.KEY`` (the upgrade is then answered with ``realtime``).
  A new call takes what ``POST /v1/realtime/calls`` takes: a server key, or a client secret
  (used once, its bound session applied), or nothing when no ``auth.api_keys`` are configured
  (``401`` otherwise);
* ``?call_id=…`` attaches a sideband: a server key only, and only when server keys are
  configured (``403 sideband_disabled`` without them: a call id alone must never be enough
  to take over a call); an unknown call → ``404 call_not_found``;
* ``?intent=transcription`` starts a transcription session (``session.type: "transcription"``).

Then the request goes to :meth:`signaling.service.CallService.serve_socket`, which admits the call
(``503 capacity`` …, still JSON) and serves the socket. The per-client limits of
:mod:`signaling.limits` apply to new calls here as to offers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import hdrs, web

from gateway.config import GatewayConfig
from signaling.auth import Authenticator, bearer, merge_sessions, settle_secret
from signaling.bound_session import expand
from signaling.client_secrets import MINTER, TOKEN_PREFIX, ClientSecret
from signaling.errors import ApiError
from signaling.internal import is_internal
from signaling.limits import ADMITTED_KEY
from signaling.paths import REALTIME_PATH
from signaling.service import REGISTRY, SocketRequest

logger = logging.getLogger(__name__)

T = TypeVar("T")

SUBPROTOCOL = "realtime"
KEY_SUBPROTOCOL_PREFIX = "openai-insecure-api-key."
#: Where a front process puts the session a new call starts with (only read with the internal token).
FORWARDED_SESSION_HEADER = "X-Voice-Gateway-Session"

#: A bound session the front forwards is at most this long, encoded (aiohttp allows 8 KiB a header).
MAX_FORWARDED_SESSION_BYTES = 6 * 1024

AUTHENTICATOR = web.AppKey("realtime_socket_authenticator", Authenticator)


def encode_session(session: dict[str, Any] | None) -> str | None:
    """A session as :data:`FORWARDED_SESSION_HEADER` carries it (compact JSON, base64url)."""
    if session is None:
        return None
    encoded = base64.urlsafe_b64encode(json.dumps(session, separators=(",", ":")).encode()).decode()
    if len(encoded) > MAX_FORWARDED_SESSION_BYTES:
        raise ApiError(400, "session_too_large", "behind a worker front, a session bound to a client secret "
                       f"may be at most {MAX_FORWARDED_SESSION_BYTES} bytes encoded")
    return encoded


def decode_session(value: str) -> dict[str, Any]:
    session = json.loads(base64.urlsafe_b64decode(value.encode()))
    if not isinstance(session, dict):
        raise ValueError("the forwarded session is not an object")
    return session


def subprotocols(request: web.Request) -> list[str]:
    return [p.strip() for header in request.headers.getall(hdrs.SEC_WEBSOCKET_PROTOCOL, [])
            for p in header.split(",") if p.strip()]


def credential_of(request: web.Request) -> str | None:
    """``Authorization: Bearer``, else the browser form's ``openai-insecure-api-key.KEY`` subprotocol."""
    credential = bearer(request)
    if credential is not None:
        return credential
    for protocol in subprotocols(request):
        if protocol.startswith(KEY_SUBPROTOCOL_PREFIX) and len(protocol) > len(KEY_SUBPROTOCOL_PREFIX):
            return protocol[len(KEY_SUBPROTOCOL_PREFIX):]
    return None


async def realtime_socket(request: web.Request) -> web.StreamResponse:
    if request.headers.get(hdrs.UPGRADE, "").lower() != "websocket":
        raise ApiError(426, "websocket_required", "GET /v1/realtime is a WebSocket: send an Upgrade: websocket "
                       "request (POST /v1/realtime/calls places a WebRTC call)")
    protocol = SUBPROTOCOL if SUBPROTOCOL in subprotocols(request) else None
    service = request.app[REGISTRY]
    call_id = request.query.get("call_id")
    if call_id is not None:
        if not is_internal(request):
            _require_sideband_key(request)
        return await service.serve_socket(request, SocketRequest("sideband", call_id=call_id, protocol=protocol))
    if is_internal(request):  # from this gateway's front, which checked the caller
        session = _forwarded_session(request)
        return await service.serve_socket(request, SocketRequest("realtime", session=session, protocol=protocol,
                                                                 admitted=request.get(ADMITTED_KEY)))
    return await _new_call(request, protocol)


async def _new_call(request: web.Request, protocol: str | None) -> web.StreamResponse:
    authenticator = request.app[AUTHENTICATOR]
    credential = credential_of(request)
    store = authenticator.store
    anonymous = not authenticator.keys_required and credential is not None and not await store.knows(credential)
    secret: ClientSecret | None = None
    if credential is None or not credential.startswith(TOKEN_PREFIX) or anonymous:
        _unauthorized_unless(lambda: authenticator.require_server_key(credential), request)
    else:
        secret = await _claimed(authenticator, credential, request)
    session = expand(secret.session) if secret is not None and secret.session is not None else None
    if request.query.get("intent") == "transcription":
        session = merge_sessions(session, {"type": "transcription"})
    limits_admitted = request.get(ADMITTED_KEY)
    consumed: list[asyncio.Task[None]] = []  # the secret's consumption once the call is admitted, awaited below

    def admitted(call_id: str) -> None:
        if secret is not None and not consumed:
            consumed.append(asyncio.ensure_future(store.consume(secret, call_id)))
        if limits_admitted is not None:
            limits_admitted(call_id)

    try:
        return await request.app[REGISTRY].serve_socket(
            request, SocketRequest("realtime", session=session, protocol=protocol, admitted=admitted))
    finally:
        if consumed:
            await settle_secret(consumed[0])
        elif secret is not None:
            await settle_secret(store.release(secret))  # only a claim that never became a call


async def _claimed(authenticator: Authenticator, credential: str, request: web.Request) -> ClientSecret:
    try:
        return await authenticator.store.claim(credential)
    except ApiError as exc:
        logger.info("refused %s %s from %s: %s", request.method, request.path, request.remote, exc.code)
        raise


def _unauthorized_unless(check: Callable[[], T], request: web.Request) -> T:
    try:
        return check()
    except ApiError as exc:
        logger.info("refused %s %s from %s: %s", request.method, request.path, request.remote, exc.code)
        raise


def _require_sideband_key(request: web.Request) -> None:
    authenticator = request.app[AUTHENTICATOR]
    if not authenticator.keys_required:
        raise ApiError(403, "sideband_disabled", "sideband control needs server API keys (auth.api_keys): "
                       "without them, a call id alone would let anyone take over a call")
    _unauthorized_unless(lambda: authenticator.require_server_key(credential_of(request)), request)


def _forwarded_session(request: web.Request) -> dict[str, Any] | None:
    value = request.headers.get(FORWARDED_SESSION_HEADER)
    if value is None:
        return None
    try:
        return decode_session(value)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "invalid_session", "the forwarded session is not valid") from exc


def setup_realtime_socket(app: web.Application, config: GatewayConfig) -> None:
    """Add ``GET /v1/realtime`` (after :func:`signaling.middlewares.signaling_app`, whose minter it shares)."""
    app[AUTHENTICATOR] = Authenticator(config.auth, store=app[MINTER].secrets)
    app.router.add_get(REALTIME_PATH, realtime_socket)
