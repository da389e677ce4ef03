"""``POST /v1/realtime/calls`` (SDP offer in, answer out) and ``DELETE`` to hang up.

Bodies are read whole, within their limits and the body timeout (:mod:`signaling.body`).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from signaling.auth import bound_session, merge_sessions
from signaling.body import read_body, read_form
from signaling.client_secrets import create_client_secret
from signaling.errors import ApiError
from signaling.paths import CALL_PATH, CALLS_PATH, CLIENT_SECRETS_PATH, call_location
from signaling.sdp import decode_sdp
from signaling.service import REGISTRY, CallService

MAX_SDP_BYTES = web.AppKey("max_sdp_bytes", int)


async def create_call(request: web.Request) -> web.Response:
    max_bytes = request.app[MAX_SDP_BYTES]
    sdp, session = await _read_offer(request, max_bytes)
    session = merge_sessions(bound_session(request), session)  # a client secret's session, then the offer's
    registry = request.app[REGISTRY]
    call_id, answer = await registry.create_call(sdp, session)
    return web.Response(
        status=201,
        body=answer.encode(),
        content_type="application/sdp",
        headers={"Location": call_location(call_id)},
    )


async def hangup_call(request: web.Request) -> web.Response:
    await request.app[REGISTRY].hangup(request.match_info["call_id"])
    return web.Response(status=204)


async def _read_offer(request: web.Request, max_bytes: int) -> tuple[str, dict[str, Any] | None]:
    content_type = request.content_type
    if content_type == "application/sdp":
        return decode_sdp(await read_body(request, max_bytes, code="sdp_too_large"), max_bytes=max_bytes), None
    if content_type == "multipart/form-data":
        parts = await read_form(request, max_bytes)
        if "sdp" not in parts:
            raise ApiError(400, "missing_sdp", "the multipart body has no 'sdp' part")
        sdp = decode_sdp(parts["sdp"], max_bytes=max_bytes)
        return sdp, _parse_session(parts["session"]) if "session" in parts else None
    raise ApiError(415, "unsupported_media_type",
                   f"Content-Type must be application/sdp or multipart/form-data, not {content_type!r}")


def _parse_session(data: bytes) -> dict[str, Any]:
    try:
        session = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: also over-long integers
        raise ApiError(400, "invalid_session", f"the 'session' part is not valid JSON: {exc}") from exc
    if not isinstance(session, dict):
        raise ApiError(400, "invalid_session", "the 'session' part must be a JSON object")
    return session


def setup_routes(app: web.Application, registry: CallService, *, max_sdp_bytes: int) -> None:
    app[REGISTRY] = registry
    app[MAX_SDP_BYTES] = max_sdp_bytes
    app.router.add_post(CALLS_PATH, create_call)
    app.router.add_delete(CALL_PATH, hangup_call)
    app.router.add_post(CLIENT_SECRETS_PATH, create_client_secret)
