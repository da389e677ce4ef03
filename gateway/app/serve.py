"""Run the app until SIGTERM/SIGINT, then drain: the gateway's process life cycle.

* Start: the HTTP server listens at once (``/healthz`` answers) while the
  models load in the background (``/readyz`` is 503 until they are loaded).
* First SIGTERM (or SIGINT): readiness turns 503 and new calls get ``503
  draining`` with ``Retry-After`` at once; live calls go on until they end or
  ``server.drain_timeout_seconds`` passes, then they are closed with a
  ``gateway.session.ended`` event; then every peer connection is closed (each
  with a bounded wait), the sinks are flushed and the process exits 0.
* A second signal exits at once (status 128 + the signal number).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys

from aiohttp import web

from gateway.app.keys import ENGINE_LOADING, REGISTRY
from gateway.app.workers import inherited_listener
from gateway.config import GatewayConfig
from gateway.session.registry import SessionRegistry

logger = logging.getLogger(__name__)

#: How long in-flight HTTP requests may take to finish once the listener is closed.
HTTP_SHUTDOWN_TIMEOUT = 5.0
DRAIN_POLL_SECONDS = 0.1


async def serve(app: web.Application, config: GatewayConfig) -> int:
    """Serve ``app`` until a signal; returns the exit status (1: the models failed to load)."""
    loop = asyncio.get_running_loop()
    registry = app[REGISTRY]
    stop = asyncio.Event()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        name = signal.Signals(signum).name
        if len(received) == 1:
            registry.draining = True
            logger.info("%s: draining: no new calls; %d live call(s) get up to %.0f s to end", name,
                        len(registry), config.server.drain_timeout_seconds)
            stop.set()
        else:
            logger.warning("second %s: exiting now", name)
            _exit_now(128 + signum)

    handled = (signal.SIGTERM, signal.SIGINT)
    for signum in handled:
        loop.add_signal_handler(signum, on_signal, signum)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT, access_log=None)
    status = 0
    try:
        await runner.setup()
        listener = inherited_listener()  # a worker serves on the socket its front bound (gateway/app/workers.py)
        site = (web.SockSite(runner, listener) if listener is not None
                else web.TCPSite(runner, config.server.host, config.server.port))
        await site.start()
        for address in runner.addresses:
            logger.info("voice gateway: listening on %s", _url(address))
        loading = app[ENGINE_LOADING]
        await _first_of(stop, loading.done)
        if loading.done.is_set() and loading.error is not None:
            # Stay up, not ready: /readyz answers 503 and calls 503 engine_unavailable, instead of a crash loop
            # under a supervisor that restarts on exit. The exit status says it when the process is stopped.
            logger.error("voice gateway: the speech engines could not be loaded; serving 503 until stopped")
            status = 1
        elif registry.engines is not None:
            logger.info("voice gateway: ready")
        await stop.wait()
        await drain(registry, config.server.drain_timeout_seconds)
    finally:
        registry.draining = True
        await runner.cleanup()
        for signum in handled:
            loop.remove_signal_handler(signum)
    logger.info("voice gateway: stopped")
    return status


async def drain(registry: SessionRegistry, grace_s: float) -> None:
    """Wait up to ``grace_s`` for the live calls to end; close the rest (``drain_timeout``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    while len(registry) and loop.time() < deadline:  # noqa: ASYNC110 - the registry has no "emptied" signal
        await asyncio.sleep(DRAIN_POLL_SECONDS)
    if len(registry):
        logger.info("drain: %d call(s) still live after %.0f s; closing them", len(registry), grace_s)
        await registry.close_all("drain_timeout")
    else:
        logger.info("drain: no live calls")


async def _first_of(*events: asyncio.Event) -> None:
    waits = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _url(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        host = "localhost" if host in ("0.0.0.0", "::") else host
        return f"http://[{host}]:{address[1]}/" if ":" in host else f"http://{host}:{address[1]}/"
    return str(address)


def _exit_now(status: int) -> None:
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    os._exit(status)
