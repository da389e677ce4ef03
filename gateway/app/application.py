"""``create_app(config)``: the aiohttp application of the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.config import GatewayConfig
from gateway.voice.engines import Engines
from gateway.app.engines import load_engines, warm_up
from gateway.ops.heap import HeapTrimmer, freeze_long_lived
from gateway.ops.observers import CallObserver
from gateway.app.operations import setup_operations
from gateway.session.registry import SessionRegistry
from gateway.app.workers import INTERNAL_HEADER, INTERNAL_TOKEN_ENV, watch_parent
from media.jitter import set_audio_prefetch
from signaling.auth import auth_middleware
from signaling.cors import cors_middleware
from signaling.errors import json_errors
from signaling.limits import limits_middleware
from signaling.routes import setup_routes

logger = logging.getLogger(__name__)

CONFIG = web.AppKey("config", GatewayConfig)
REGISTRY = web.AppKey("gateway_registry", SessionRegistry)

WEB_DEMO = Path(__file__).resolve().parents[2] / "web_demo"

EngineLoader = Callable[[GatewayConfig], Engines]


class EngineLoading:
    """Background model loading: ``done`` is set when it ends; ``error`` says if it failed."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.error: BaseException | None = None


ENGINE_LOADING = web.AppKey("engine_loading", EngineLoading)


def extra_middlewares(config: GatewayConfig) -> list[Middleware]:
    """Middlewares after CORS and JSON errors, shared by single-process and front apps.

    In a worker process, requests forwarded by the front (which already applied
    them, with the caller's address and credentials) skip them.
    """
    middlewares = [limits_middleware(config.limits), auth_middleware(config)]  # limits first: they count refusals
    if os.environ.get(INTERNAL_TOKEN_ENV):
        middlewares = [_unless_internal(m) for m in middlewares]
    return middlewares


def _is_internal(request: web.Request) -> bool:
    token = os.environ.get(INTERNAL_TOKEN_ENV)
    offered = request.headers.get(INTERNAL_HEADER, "")
    return bool(token) and hmac.compare_digest(offered.encode(), token.encode())  # type: ignore[union-attr]


def _unless_internal(middleware: Middleware) -> Middleware:
    @web.middleware
    async def wrapped(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _is_internal(request):
            return await handler(request)
        return await middleware(request, handler)

    return wrapped


def create_app(config: GatewayConfig, *, engine_loader: EngineLoader = load_engines,
               engines: Engines | None = None, observers: Iterable[CallObserver] = ()) -> web.Application:
    """Build the application. Models load in the background once it starts (``/readyz`` says when).

    ``engines`` hands in already loaded engines (shared by several apps, e.g. in
    tests); the app then neither loads nor closes them. ``observers`` are told
    about calls besides the app's own metrics, lifecycle events and logs.
    """
    set_audio_prefetch(config.media.jitter_prefetch_frames)
    app = web.Application(middlewares=[cors_middleware(config.server.allow_origins), json_errors,
                                       *extra_middlewares(config)],
                          client_max_size=config.limits.max_sdp_bytes + 4096)
    observer = setup_operations(app, config, engines=lambda: app[REGISTRY].engines,
                                observers=[*observers, HeapTrimmer()])  # HeapTrimmer: see gateway/heap.py
    registry = SessionRegistry(config, observer=observer)
    loading = EngineLoading()
    app[CONFIG] = config
    app[ENGINE_LOADING] = loading
    app[REGISTRY] = registry
    setup_routes(app, registry, max_sdp_bytes=config.limits.max_sdp_bytes)
    add_page_and_health_routes(app)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/internal/load", _internal_load)

    async def engines_ctx(app: web.Application) -> AsyncIterator[None]:
        task = None
        registry.load.start()
        parent_watch = asyncio.create_task(watch_parent(), name="watch-parent")
        if engines is None:
            task = asyncio.create_task(_load_engines(config, engine_loader, registry, loading), name="load-engines")
        else:
            registry.set_engines(engines)
            loading.done.set()
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        registry.draining = True
        await registry.close_all("shutdown")
        await registry.load.stop()
        parent_watch.cancel()
        await asyncio.gather(parent_watch, return_exceptions=True)
        loaded = registry.engines
        registry.set_engines(None)
        if engines is None and loaded is not None:
            await asyncio.get_running_loop().run_in_executor(None, loaded.close)  # joins the inference threads

    app.cleanup_ctx.append(engines_ctx)
    return app


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


def add_page_and_health_routes(app: web.Application) -> None:
    """``/`` and ``/static/`` (the demo page) and ``/healthz``: the same in single-process and front apps."""
    app.router.add_get("/", _index)
    app.router.add_get("/healthz", _healthz)
    if WEB_DEMO.is_dir():
        app.router.add_static("/static/", WEB_DEMO, show_index=False)


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DEMO / "index.html")


async def _internal_load(request: web.Request) -> web.Response:
    """This process's load, for a front process (only with the internal token it was started with)."""
    if not _is_internal(request):
        raise web.HTTPNotFound()
    return web.json_response(request.app[REGISTRY].load_report())


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    config = request.app[CONFIG]
    reason = None
    if registry.engines is None:
        reason = "engines_not_loaded"
    elif registry.draining:
        reason = "draining"
    elif len(registry) >= config.limits.max_calls:
        reason = "at_capacity"
    if reason:
        return web.json_response({"status": "unavailable", "reason": reason}, status=503)
    return web.json_response({"status": "ready", "active_calls": len(registry)})
