"""Gateway errors as gRPC statuses: the HTTP status's counterpart, the stable code first in the message."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from gateway.errors import GatewayError

STATUS_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
                404: grpc.StatusCode.NOT_FOUND, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
                429: grpc.StatusCode.RESOURCE_EXHAUSTED, 502: grpc.StatusCode.INTERNAL,
                503: grpc.StatusCode.UNAVAILABLE}


async def abort_with(context: grpc.aio.ServicerContext, exc: GatewayError) -> None:
    """End the RPC with the status matching ``exc`` (``INVALID_ARGUMENT: unknown_voice: ...``); raises."""
    await context.abort(STATUS_CODES.get(exc.status, grpc.StatusCode.INTERNAL), f"{exc.code}: {exc.message}")


class InvalidMessages(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """A request that is not a valid protobuf ends its RPC with ``INVALID_ARGUMENT: invalid_message``.

    grpc.aio would answer ``UNKNOWN`` and log a traceback for each; here the handler receives the raw bytes
    and parses them itself (unary and streaming requests alike; the other RPC kinds pass untouched).
    """

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        parse, serialize = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
                return await inner(await _parsed(parse, raw, context), context)

            return grpc.unary_unary_rpc_method_handler(unary, response_serializer=serialize)
        if handler.stream_stream is not None:
            streaming = handler.stream_stream

            async def streams(raw: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
                async def requests() -> AsyncIterator[Any]:
                    async for message in raw:
                        yield await _parsed(parse, message, context)

                async for response in streaming(requests(), context):
                    yield response

            return grpc.stream_stream_rpc_method_handler(streams, response_serializer=serialize)
        return handler


async def _parsed(parse: Callable[[bytes], Any], raw: bytes, context: grpc.aio.ServicerContext) -> Any:
    try:
        return parse(raw)
    except DecodeError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid_message: the request is not a valid "
                            f"protobuf message: {exc}")
