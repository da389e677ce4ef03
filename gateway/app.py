"""``create_app(config)``: the aiohttp application of the gateway."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from gateway.config import GatewayConfig
from gateway.conversation import drain_background
from gateway.engines import Engines, load_engines, warm_up
from gateway.registry import SessionRegistry
from media.jitter import set_audio_prefetch
from signaling.errors import json_errors
from signaling.routes import setup_routes

logger = logging.getLogger(__name__)

CONFIG = web.AppKey("config", GatewayConfig)
REGISTRY = web.AppKey("gateway_registry", SessionRegistry)

WEB_DEMO = Path(__file__).resolve().parent.parent / "web_demo"

EngineLoader = Callable[[GatewayConfig], Engines]


def create_app(config: GatewayConfig, *, engine_loader: EngineLoader = load_engines,
               engines: Engines | None = None) -> web.Application:
    """Build the application. Models load in ``cleanup_ctx``, off the event loop.

    ``engines`` hands in already loaded engines (shared by several apps, e.g. in
    tests); the app then neither loads nor closes them.
    """
    set_audio_prefetch(config.media.jitter_prefetch_frames)
    app = web.Application(middlewares=[json_errors], client_max_size=config.limits.max_sdp_bytes + 4096)
    registry = SessionRegistry(config)
    app[CONFIG] = config
    app[REGISTRY] = registry
    setup_routes(app, registry, max_sdp_bytes=config.limits.max_sdp_bytes)
    app.router.add_get("/", _index)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    if WEB_DEMO.is_dir():
        app.router.add_static("/static/", WEB_DEMO, show_index=False)

    async def engines_ctx(app: web.Application) -> AsyncIterator[None]:
        owned = engines is None
        loaded = engines
        if loaded is None:
            loop = asyncio.get_running_loop()
            loaded = await loop.run_in_executor(None, engine_loader, config)
            await warm_up(loaded)
        registry.set_engines(loaded)
        yield
        registry.draining = True
        await registry.close_all("shutdown")
        await drain_background()
        registry.set_engines(None)
        if owned:
            loaded.close()

    app.cleanup_ctx.append(engines_ctx)
    return app


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(WEB_DEMO / "index.html")


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
