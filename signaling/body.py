"""Request bodies, read whole, within their limits and in time.

``request.content.read(n)`` returns what has *arrived*, not the body: an offer
whose second TCP segment came a moment later was judged on its first half.
Here a body is read until its end (``Content-Length``, or the last chunk), and
refused as soon as it is known to be too large — from ``Content-Length`` before
a byte is read. The whole body must arrive within
``limits.body_read_timeout_seconds`` (default 10 s) → ``408 request_timeout``:
a client that trickles its body holds one of its few per-client call slots
that long at most, not for ever.

A multipart offer (``sdp`` and ``session`` parts) may have at most
:data:`MAX_FORM_PARTS` parts (``400 too_many_parts``), each at most
``limits.max_sdp_bytes`` (``413 sdp_too_large``), and all of it, boundaries and
part headers included, at most ``max_sdp_bytes`` + :data:`FORM_OVERHEAD_BYTES`
(``413 body_too_large``). Nothing is buffered beyond those limits; what aiohttp
skips by itself (a preamble before the first boundary) is counted against the
total when the next part starts, and bounded in time by the timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.config import LimitsConfig
from signaling.errors import ApiError

MAX_FORM_PARTS = 4
#: Room for the ``session`` part, boundaries and part headers around the largest offer.
FORM_OVERHEAD_BYTES = 64 * 1024
CHUNK_BYTES = 16 * 1024


@dataclass(frozen=True)
class BodyLimits:
    timeout_seconds: float = 10.0
    max_parts: int = MAX_FORM_PARTS

    @classmethod
    def from_config(cls, limits: LimitsConfig) -> BodyLimits:
        return cls(limits.body_read_timeout_seconds)


#: The app's body limits (set by :func:`signaling.middlewares.signaling_app`).
BODY_LIMITS = web.AppKey("body_limits", BodyLimits)


def body_limits(request: web.Request) -> BodyLimits:
    return request.app.get(BODY_LIMITS) or BodyLimits()


def _too_large(code: str, max_bytes: int) -> ApiError:
    return ApiError(413, code, f"the request body is larger than {max_bytes} bytes")


def _check_length(request: web.Request, max_bytes: int, code: str) -> None:
    """Refuse a body whose ``Content-Length`` is already too large, before reading it."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise _too_large(code, max_bytes)


@asynccontextmanager
async def _in_time(request: web.Request) -> AsyncIterator[None]:
    seconds = body_limits(request).timeout_seconds
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise ApiError(408, "request_timeout", f"the request body did not arrive within {seconds:g} s") from None


async def read_body(request: web.Request, max_bytes: int, *, code: str) -> bytes:
    """The whole body (at most ``max_bytes``, else ``413 code``), read within the body timeout."""
    _check_length(request, max_bytes, code)
    chunks: list[bytes] = []
    size = 0
    async with _in_time(request):
        while chunk := await request.content.readany():
            size += len(chunk)
            if size > max_bytes:
                raise _too_large(code, max_bytes)
            chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: web.Request, max_part_bytes: int) -> dict[str, bytes]:
    """The parts of a ``multipart/form-data`` body by name (the last one of a name wins), within the limits."""
    limits = body_limits(request)
    max_total = max_part_bytes + FORM_OVERHEAD_BYTES
    _check_length(request, max_total, "body_too_large")
    parts: dict[str, bytes] = {}
    count = 0
    async with _in_time(request):
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                _check_total(request, max_total)
                count += 1
                if count > limits.max_parts:
                    raise ApiError(400, "too_many_parts", f"a multipart offer has at most {limits.max_parts} parts")
                if not isinstance(part, BodyPartReader):
                    raise ApiError(400, "invalid_multipart", "nested multipart bodies are not supported")
                data = await _read_part(part, max_part_bytes)
                _check_total(request, max_total)
                if part.name is not None:
                    parts[part.name] = data
        # aiohttp's parser: ValueError, AssertionError; BadHttpMessage (too many part headers); RuntimeError (a
        # long _charset_ part)
        except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as exc:
            raise ApiError(400, "invalid_multipart", f"the multipart body is malformed: {exc}") from exc
    return parts


def _check_total(request: web.Request, max_total: int) -> None:
    if request.content.total_bytes > max_total:
        raise _too_large("body_too_large", max_total)


async def _read_part(part: BodyPartReader, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, "sdp_too_large", f"a form part is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
