"""The front process of a multi-worker gateway (``server.workers > 1``).

It serves the same public HTTP surface as a single-process gateway — the same
signaling routes and middlewares, the demo page, health — but places calls on
worker processes through a :class:`WorkerPool`. ``GET /metrics`` concatenates
the workers' metrics with a ``worker`` label. See :mod:`gateway.app.workers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
from collections.abc import Sequence

import aiohttp
from aiohttp import web

from gateway.app.health import add_page_and_health_routes
from gateway.app.workers import WorkerPool
from gateway.config import GatewayConfig
from signaling.middlewares import signaling_app
from signaling.realtime_socket import setup_realtime_socket
from signaling.routes import setup_routes
from signaling.twilio import setup_twilio_routes

logger = logging.getLogger(__name__)

POOL = web.AppKey("worker_pool", WorkerPool)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?(\s.*)$")


def create_front_app(config: GatewayConfig, pool: WorkerPool) -> web.Application:
    app = signaling_app(config)
    app[POOL] = pool
    setup_routes(app, pool, max_sdp_bytes=config.limits.max_sdp_bytes)
    setup_realtime_socket(app, config)  # sockets are proxied to a worker (WorkerPool.serve_socket)
    setup_twilio_routes(app, config.telephony)  # media streams are proxied to a worker (WorkerPool.serve_socket)
    add_page_and_health_routes(app)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


async def _readyz(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    workers = [
        {"worker": w.index, "active_calls": w.load.active_calls, "accepting": w.load.accepting,
         "reason": w.load.reason, "headroom_calls": w.load.headroom_calls, "degradation": w.load.degradation}
        for w in pool.workers
    ]
    if pool.draining:
        return web.json_response({"status": "unavailable", "reason": "draining", "workers": workers}, status=503)
    if not pool.ready:
        reasons = {w.load.reason for w in pool.workers}
        reason = "engines_not_loaded" if reasons & {"starting", "engines_not_loaded"} else "at_capacity"
        return web.json_response({"status": "unavailable", "reason": reason, "workers": workers}, status=503)
    return web.json_response({"status": "ready", "active_calls": len(pool), "workers": workers})


async def _metrics(request: web.Request) -> web.Response:
    pool = request.app[POOL]
    seen_meta: set[str] = set()
    lines: list[str] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        for worker in pool.workers:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with http.get(f"{worker.url}/metrics") as response:
                    text = await response.text()
                lines.extend(label_worker(text, worker.index, seen_meta))
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


def label_worker(text: str, index: int, seen_meta: set[str]) -> list[str]:
    """Prometheus text lines with ``worker="index"`` added to each sample; HELP/TYPE once."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("#"):
            if line not in seen_meta:
                seen_meta.add(line)
                out.append(line)
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, rest = match.groups()
        inner = labels[1:-1] if labels else ""
        joined = f'worker="{index}"' + ("," + inner if inner else "")
        out.append(f"{name}{{{joined}}}{rest}")
    return out


async def serve_front(config: GatewayConfig, worker_argv: Sequence[str]) -> int:
    """Run the front and its workers until SIGTERM/SIGINT; the workers drain their own calls."""
    loop = asyncio.get_running_loop()
    pool = WorkerPool(config.server.workers, worker_argv)
    app = create_front_app(config, pool)
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        pool.draining = True
        if len(received) == 1:
            logger.info("%s: draining %d worker(s)", signal.Signals(signum).name, len(pool.workers))
            stop.set()
        else:
            for worker in pool.workers:
                worker.signal(signal.SIGKILL)
            stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await pool.start()
        await web.TCPSite(runner, config.server.host, config.server.port).start()
        logger.info("voice gateway: front listening on http://%s:%d with %d workers", config.server.host,
                    config.server.port, len(pool.workers))
        await stop.wait()
    finally:
        await pool.close(config.server.drain_timeout_seconds)
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    return 0 if len(received) <= 1 else 128 + received[-1]
