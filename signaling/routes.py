"""``POST /v1/realtime/calls`` (SDP offer in, answer out) and ``DELETE`` to hang up."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import BodyPartReader, web

from signaling.auth import bound_session, create_client_secret, merge_sessions
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
        return decode_sdp(await _read_limited(request.content, max_bytes), max_bytes=max_bytes), None
    if content_type == "multipart/form-data":
        return await _read_multipart(request, max_bytes)
    raise ApiError(415, "unsupported_media_type",
                   f"Content-Type must be application/sdp or multipart/form-data, not {content_type!r}")


async def _read_limited(stream: Any, max_bytes: int) -> bytes:
    body: bytes = await stream.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise ApiError(413, "sdp_too_large", f"the request body is larger than {max_bytes} bytes")
    return body


async def _read_multipart(request: web.Request, max_bytes: int) -> tuple[str, dict[str, Any] | None]:
    sdp: str | None = None
    session: dict[str, Any] | None = None
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise ApiError(400, "invalid_multipart", "nested multipart bodies are not supported")
            data = await part.read(decode=False)
            if len(data) > max_bytes:
                raise ApiError(413, "sdp_too_large", f"a form part is larger than {max_bytes} bytes")
            if part.name == "sdp":
                sdp = decode_sdp(bytes(data), max_bytes=max_bytes)
            elif part.name == "session":
                session = _parse_session(bytes(data))
    except (ValueError, AssertionError) as exc:
        raise ApiError(400, "invalid_multipart", f"the multipart body is malformed: {exc}") from exc
    if sdp is None:
        raise ApiError(400, "missing_sdp", "the multipart body has no 'sdp' part")
    return sdp, session


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
