"""JSON errors for every HTTP failure: ``{"error": {"type", "code", "message"}}``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from gateway.errors import GatewayError

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, error_type: str = "invalid_request_error",
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.error_type = error_type
        self.retry_after = retry_after


def error_response(status: int, error_type: str, code: str, message: str,
                   retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response({"error": {"type": error_type, "code": code, "message": message}}, status=status,
                             headers=headers)


#: Refusals that may leave the request body unread: the connection is closed after the answer.
CLOSING_STATUSES = frozenset({408, 413})


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.error_type, exc.code, exc.message, exc.retry_after)
        if exc.status in CLOSING_STATUSES:
            response.force_close()
        return response
    except GatewayError as exc:
        return error_response(exc.status, exc.error_type, exc.code, exc.message, exc.retry_after)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "http_error")
        return error_response(exc.status, "invalid_request_error", code, exc.reason, None)
    except Exception:
        logger.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "server_error", "internal_error", "internal server error")
