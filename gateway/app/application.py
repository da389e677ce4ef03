"""``create_app(config)``: the aiohttp application of a single-process gateway.

Each resource has its own cleanup context, appended in the order they start;
aiohttp closes them in the reverse order, which is the order shutdown needs:

1. the sinks of lifecycle events and ``/metrics`` (:func:`setup_operations`): closed last, after the
   last call's ``call.ended`` was queued;
2. the engines: loaded in the background (``/readyz`` says when), closed once no call uses them;
3. the watch on the front process (a worker exits when its front is gone);
4. the load monitor: admission asks it while calls are placed;
5. the cluster's heartbeat and Redis connection (``cluster.redis_url``): withdrawn once the calls are closed;
6. the speech services' gRPC server (``server.grpc_port``; gateway/speech/grpc_server.py): stopped before the
   engines it uses;
7. the calls: no new ones, the live ones closed (each awaits its own tasks) — first on shutdown.

The OpenAI-compatible speech endpoints (``/v1/audio/*``, ``/v1/models``) share the registry's engines and
admission (:class:`gateway.speech.service.SpeechServices`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable

from aiohttp import web

from gateway.app.engines import load_engines, warm_up
from gateway.app.health import add_page_and_health_routes, add_readiness_routes, register_admission_metrics
from gateway.app.keys import CLUSTER, CONFIG, ENGINE_LOADING, GRPC_SERVER, LOCAL_CALLS, REGISTRY, EngineLoading
from gateway.app.operations import METRICS, setup_operations
from gateway.app.realtime import add_realtime_sockets
from gateway.app.sockets import LocalCalls
from gateway.app.workers import watch_parent
from gateway.cluster.cluster import Cluster
from gateway.config import GatewayConfig
from gateway.ops.heap import HeapTrimmer, freeze_long_lived
from gateway.ops.observers import CallObserver
from gateway.session.registry import SessionRegistry
from gateway.speech.grpc_server import SpeechGrpcServer
from gateway.speech.service import SpeechServices
from gateway.transports.twilio import serve_twilio_stream
from gateway.transports.webrtc import webrtc_transports
from gateway.voice.engines import Engines
from media.jitter import set_audio_prefetch
from media.opus_inbound import set_inbound_opus_rate
from signaling.internal import INTERNAL_TOKEN
from signaling.middlewares import signaling_app
from signaling.realtime_socket import setup_realtime_socket
from signaling.routes import setup_routes
from signaling.service import CallService
from signaling.speech_routes import setup_speech_routes
from signaling.twilio import setup_twilio_routes

__all__ = ["CONFIG", "ENGINE_LOADING", "GRPC_SERVER", "LOCAL_CALLS", "REGISTRY", "EngineLoader", "EngineLoading",
           "create_app"]

logger = logging.getLogger(__name__)

EngineLoader = Callable[[GatewayConfig], Engines]
ResourceContext = Callable[[web.Application], AsyncIterator[None]]


def create_app(config: GatewayConfig, *, engine_loader: EngineLoader = load_engines,
               engines: Engines | None = None, observers: Iterable[CallObserver] = ()) -> web.Application:
    """Build the application. Models load in the background once it starts (``/readyz`` says when).

    ``engines`` hands in already loaded engines (shared by several apps, e.g. in
    tests); the app then neither loads nor closes them. ``observers`` are told
    about calls besides the app's own metrics, lifecycle events and logs.
    """
    set_audio_prefetch(config.media.jitter_prefetch_frames)
    set_inbound_opus_rate(16_000 if config.media.opus_decode_16k else None)
    cluster = Cluster(config) if config.cluster.redis_url else None
    app = signaling_app(config, secrets=cluster.secrets if cluster else None,
                        limits=cluster.limits if cluster else None, mint_rate=cluster.mint_rate if cluster else None)
    observers = [*observers, HeapTrimmer(), *([cluster.observer] if cluster else [])]  # HeapTrimmer: ops/heap.py
    observer = setup_operations(app, config, engines=lambda: app[REGISTRY].engines, observers=observers)
    registry = SessionRegistry(config, transports=webrtc_transports(config), observer=observer)
    app[CONFIG] = config
    app[ENGINE_LOADING] = EngineLoading()
    app[REGISTRY] = registry
    register_admission_metrics(app[METRICS].registry, registry)
    calls = LocalCalls(registry)
    app[LOCAL_CALLS] = calls
    service: CallService = calls
    contexts = [_engines_ctx(engine_loader, engines), _parent_watch_ctx, _load_monitor_ctx]
    if cluster is not None:
        app[CLUSTER] = cluster
        app[INTERNAL_TOKEN] = config.cluster.internal_token
        service = cluster.serve(calls, registry.load_report)
        cluster.count_in(app[METRICS])
        contexts.append(cluster.context)
    setup_routes(app, service, max_sdp_bytes=config.limits.max_sdp_bytes)
    add_realtime_sockets(calls, registry, config)
    setup_realtime_socket(app, config)
    calls.add_socket_handler("twilio", lambda request, socket: serve_twilio_stream(request, registry, config,
                                                                                   admitted=socket.admitted))
    setup_twilio_routes(app, config.telephony)
    speech = SpeechServices(config, registry)
    setup_speech_routes(app, speech, config)
    add_page_and_health_routes(app)
    add_readiness_routes(app)
    app.cleanup_ctx.extend([*contexts, _grpc_ctx(speech), _calls_ctx])
    return app


def _grpc_ctx(speech: SpeechServices) -> ResourceContext:
    """The Riva-compatible gRPC server on ``server.grpc_port`` (0: none), in this process and loop."""

    async def grpc_ctx(app: web.Application) -> AsyncIterator[None]:
        config = app[CONFIG]
        if not config.server.grpc_port:
            yield
            return
        server = SpeechGrpcServer(config, speech, app[REGISTRY])
        try:
            await server.start()
        except RuntimeError as exc:  # the port is taken (a Riva server's default is 50051 too): calls go on
            logger.error("speech gRPC services are OFF: %s (set server.grpc_port to a free port, or 0)", exc)
            await server.stop(0)
            yield
            return
        app[GRPC_SERVER] = server
        yield
        await server.stop()

    return grpc_ctx


def _engines_ctx(loader: EngineLoader, given: Engines | None) -> ResourceContext:
    """Loads the engines in the background, or uses ``given`` ones; closes only those it loaded."""

    async def engines_ctx(app: web.Application) -> AsyncIterator[None]:
        registry, loading = app[REGISTRY], app[ENGINE_LOADING]
        task = None
        if given is None:
            task = asyncio.create_task(_load_engines(app[CONFIG], loader, registry, loading), name="load-engines")
        else:
            registry.set_engines(given)
            loading.done.set()
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        loaded = registry.engines
        registry.set_engines(None)
        if given is None and loaded is not None:
            await asyncio.get_running_loop().run_in_executor(None, loaded.close)  # joins the inference threads

    return engines_ctx


async def _parent_watch_ctx(app: web.Application) -> AsyncIterator[None]:
    watch = asyncio.create_task(watch_parent(), name="watch-parent")
    yield
    watch.cancel()
    await asyncio.gather(watch, return_exceptions=True)


async def _load_monitor_ctx(app: web.Application) -> AsyncIterator[None]:
    monitor = app[REGISTRY].load
    monitor.start()
    yield
    await monitor.stop()
    app[REGISTRY].admission.reset()  # the engines' degradation level (they may be shared)


async def _calls_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    registry = app[REGISTRY]
    registry.draining = True
    await registry.close_all("shutdown")  # each call's close awaits its own tasks


async def _load_engines(config: GatewayConfig, loader: EngineLoader, registry: SessionRegistry,
                        loading: EngineLoading) -> None:
    try:
        loaded = await asyncio.get_running_loop().run_in_executor(None, loader, config)
        try:
            await warm_up(loaded)
        except BaseException:
            loaded.close()
            raise
    except Exception as exc:
        logger.exception("loading the speech engines failed")
        loading.error = exc
    else:
        freeze_long_lived()  # the models' objects: never garbage, no longer scanned by each collection
        registry.set_engines(loaded)
    finally:
        loading.done.set()
