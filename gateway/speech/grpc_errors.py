"""Gateway errors as gRPC statuses: the HTTP status's counterpart, the stable code first in the message."""

from __future__ import annotations

import grpc

from gateway.errors import GatewayError

STATUS_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
                404: grpc.StatusCode.NOT_FOUND, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
                429: grpc.StatusCode.RESOURCE_EXHAUSTED, 502: grpc.StatusCode.INTERNAL,
                503: grpc.StatusCode.UNAVAILABLE}


async def abort_with(context: grpc.aio.ServicerContext, exc: GatewayError) -> None:
    """End the RPC with the status matching ``exc`` (``INVALID_ARGUMENT: unknown_voice: ...``); raises."""
    await context.abort(STATUS_CODES.get(exc.status, grpc.StatusCode.INTERNAL), f"{exc.code}: {exc.message}")
