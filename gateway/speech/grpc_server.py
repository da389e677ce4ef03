"""The Riva-compatible gRPC speech services on ``server.grpc_port``, in the aiohttp app's process and loop.

Served: ``nvidia.riva.asr.RivaSpeechRecognition`` (:mod:`gateway.speech.riva_asr`),
``nvidia.riva.tts.RivaSpeechSynthesis`` (:mod:`gateway.speech.riva_tts`), the standard
``grpc.health.v1.Health`` (``SERVING`` once the engines are loaded, ``NOT_SERVING`` while they load and
when draining) and server reflection. The protobufs are the ones ``nvidia-riva-client`` ships, so its
``ASRService`` / ``SpeechSynthesisService`` (and anything built on Riva's protos) work unchanged.

Auth matches HTTP: with ``auth.api_keys`` set, every RPC but health needs metadata
``authorization: Bearer KEY`` (constant-time comparison) → ``UNAUTHENTICATED``. TLS with
``server.grpc_tls_cert_file`` / ``server.grpc_tls_key_file``. Messages are at most
``speech.max_upload_bytes`` + 64 KiB (larger ones: ``RESOURCE_EXHAUSTED`` from grpc itself); one
that is not a valid protobuf is ``INVALID_ARGUMENT`` (:class:`~gateway.speech.grpc_errors.InvalidMessages`).
The port is bound without ``SO_REUSEPORT`` (grpc's default would let a second process share the port
silently and split the RPCs between them). A port in use does not stop the gateway: its calls and HTTP
go on, and an ERROR line says the gRPC services are off (:func:`gateway.app.application.create_app`) —
Riva's own default port is 50051 too, and a gateway next to a Riva server must not fail to start for it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from riva.client.proto import riva_asr_pb2, riva_asr_pb2_grpc, riva_tts_pb2, riva_tts_pb2_grpc

from gateway.config import GatewayConfig
from gateway.session.registry import SessionRegistry
from gateway.speech.grpc_errors import InvalidMessages
from gateway.speech.riva_asr import RivaRecognition
from gateway.speech.riva_tts import RivaSynthesis
from gateway.speech.service import SpeechServices

logger = logging.getLogger(__name__)

HEALTH_POLL_SECONDS = 0.5
SERVICES = (
    riva_asr_pb2.DESCRIPTOR.services_by_name["RivaSpeechRecognition"].full_name,
    riva_tts_pb2.DESCRIPTOR.services_by_name["RivaSpeechSynthesis"].full_name,
)
UNAUTHENTICATED_METHODS = ("/grpc.health.v1.Health/",)


class TokenAuth(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """``authorization: Bearer KEY`` on every RPC but health, when keys are configured."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = [key.encode() for key in keys]

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]], details: Any) -> Any:
        if not self._keys or details.method.startswith(UNAUTHENTICATED_METHODS):
            return await continuation(details)
        metadata = dict(details.invocation_metadata or ())
        scheme, _, credential = str(metadata.get("authorization", "")).strip().partition(" ")
        given = credential.strip().encode("utf-8", "surrogatepass")
        matched = False
        for key in self._keys:  # every key: the time taken does not say which one matched
            matched |= hmac.compare_digest(given, key)
        if scheme.lower() == "bearer" and matched:
            return await continuation(details)
        logger.info("gRPC %s refused: %s", details.method, "invalid API key" if credential else "no API key")
        message = ("the API key is not valid" if credential
                   else "an API key is required: send metadata 'authorization: Bearer KEY'")
        return _refusal(await continuation(details), message)


def _refusal(handler: Any, message: str) -> Any:
    """A handler of the same kind as ``handler`` that ends the RPC with ``UNAUTHENTICATED``."""

    async def abort(request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler is None:
        return None
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(abort)
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(abort)
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(abort)
    return grpc.stream_stream_rpc_method_handler(abort)


def _credentials(config: GatewayConfig) -> grpc.ServerCredentials | None:
    server = config.server
    if not server.grpc_tls_cert_file:
        return None
    chain, key = Path(server.grpc_tls_cert_file).read_bytes(), Path(server.grpc_tls_key_file).read_bytes()
    return grpc.ssl_server_credentials([(key, chain)])


class SpeechGrpcServer:
    """The grpc.aio server with the speech, health and reflection services (``start``, ``stop``)."""

    def __init__(self, config: GatewayConfig, services: SpeechServices, registry: SessionRegistry) -> None:
        self._config = config
        self._registry = registry
        max_message = config.speech.max_upload_bytes + 64 * 1024
        interceptors = [TokenAuth(config.auth.api_keys), InvalidMessages()]
        self.server = grpc.aio.server(interceptors=interceptors, options=[
            ("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", max_message),
            ("grpc.max_send_message_length", max_message)])
        riva_asr_pb2_grpc.add_RivaSpeechRecognitionServicer_to_server(RivaRecognition(services, config), self.server)
        riva_tts_pb2_grpc.add_RivaSpeechSynthesisServicer_to_server(RivaSynthesis(services, config), self.server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection((*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        self.port = 0
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> int:
        address = f"{self._config.server.host}:{self._config.server.grpc_port}"
        credentials = _credentials(self._config)
        try:
            self.port = (self.server.add_secure_port(address, credentials) if credentials is not None
                         else self.server.add_insecure_port(address))
        except RuntimeError as exc:
            raise RuntimeError(f"server.grpc_port: cannot listen on {address}: {exc}") from exc
        await self.server.start()
        if not self._config.auth.api_keys and self._config.server.host not in ("127.0.0.1", "::1", "localhost"):
            logger.warning("no API keys are configured (auth.api_keys): anyone who reaches %s:%d can use the "
                           "speech services", self._config.server.host, self.port)
        self._watch = asyncio.create_task(self._health(), name="grpc-health")
        logger.info("speech gRPC services: listening on %s://%s:%d", "grpcs" if credentials else "grpc",
                    self._config.server.host, self.port)
        return self.port

    async def _health(self) -> None:
        """SERVING while the engines are loaded and the gateway is not draining (the overall "" and each service)."""
        state = None
        while True:
            serving = self._registry.engines is not None and not self._registry.draining
            if serving != state:
                state = serving
                response = health_pb2.HealthCheckResponse
                status = response.SERVING if serving else response.NOT_SERVING
                for name in ("", *SERVICES):
                    await self.health.set(name, status)
            await asyncio.sleep(HEALTH_POLL_SECONDS)

    async def stop(self, grace: float = 2.0) -> None:
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
