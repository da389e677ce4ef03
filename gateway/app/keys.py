"""What a single-process app holds, under typed ``web.AppKey``s (set by :func:`gateway.app.application.create_app`)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from gateway.app.sockets import LocalCalls
from gateway.cluster.cluster import Cluster
from gateway.config import GatewayConfig
from gateway.session.registry import SessionRegistry
from gateway.speech.grpc_server import SpeechGrpcServer


class EngineLoading:
    """Background model loading: ``done`` is set when it ends; ``error`` says if it failed."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.error: BaseException | None = None


CONFIG = web.AppKey("config", GatewayConfig)
REGISTRY = web.AppKey("gateway_registry", SessionRegistry)
ENGINE_LOADING = web.AppKey("engine_loading", EngineLoading)
GRPC_SERVER = web.AppKey("grpc_server", SpeechGrpcServer)  # set while the gRPC speech services run
#: Signaling's call service in this process: where socket handlers are added (``add_socket_handler``).
LOCAL_CALLS = web.AppKey("local_calls", LocalCalls)
CLUSTER = web.AppKey("cluster", Cluster)  # only with cluster.redis_url
