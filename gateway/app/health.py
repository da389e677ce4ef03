"""Health, readiness and the demo page.

* ``GET /healthz``: the process answers (at once, while the models load).
* ``GET /readyz``: 200 when a call would be taken; 503 with a ``reason`` (``engines_not_loaded``,
  ``draining``, ``at_capacity``) when not. A front process answers it for its workers
  (:mod:`gateway.app.front`).
* ``GET /internal/load``: this process's load, for a front process; 404 without the internal token.
* ``GET /internal/cluster``: the live instances of a cluster and their published loads (``cluster.redis_url``;
  404 without the internal token or outside a cluster). A cluster instance's ``/readyz`` is 503
  ``cluster_unavailable`` while its heartbeat does not reach Redis (new calls would get that 503 too), and
  ``at_capacity`` also while its measured load refuses calls (event-loop lag, ASR queue wait, CPU).
* ``/`` and ``/static/``: the demo page (``web_demo/``), the same in single-process and front apps.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from gateway.app.keys import CLUSTER, CONFIG, REGISTRY
from signaling.internal import is_internal

WEB_DEMO = Path(__file__).resolve().parents[2] / "web_demo"


def add_page_and_health_routes(app: web.Application) -> None:
    """``/`` and ``/static/`` (the demo page) and ``/healthz``: the same in single-process and front apps."""
    app.router.add_get("/", _index)
    app.router.add_get("/healthz", _healthz)
    if WEB_DEMO.is_dir():
        app.router.add_static("/static/", WEB_DEMO, show_index=False)


def add_readiness_routes(app: web.Application) -> None:
    """``/readyz`` and ``/internal/load`` of a single-process app (it holds ``CONFIG`` and ``REGISTRY``)."""
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/internal/load", _internal_load)
    app.router.add_get("/internal/cluster", _internal_cluster)


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
    elif CLUSTER in request.app and not request.app[CLUSTER].reachable:
        reason = "cluster_unavailable"
    elif CLUSTER in request.app and registry.load.overload_reason(registry.engines) is not None:
        reason = "at_capacity"  # measured: the load balancer sends new calls to the other instances
    if reason:
        return web.json_response({"status": "unavailable", "reason": reason}, status=503)
    engines = registry.engines
    assert engines is not None
    # Where the models run (engines.device resolved at load: cpu | cuda; remote engines: "remote").
    devices = {name: getattr(getattr(engines, name), "device", "remote") for name in ("asr", "tts")}
    return web.json_response({"status": "ready", "active_calls": len(registry), "devices": devices})


async def _internal_load(request: web.Request) -> web.Response:
    """This process's load, for a front process (only with the internal token it was started with)."""
    if not is_internal(request):
        raise web.HTTPNotFound()
    return web.json_response(request.app[REGISTRY].load_report())


async def _internal_cluster(request: web.Request) -> web.Response:
    """The cluster's live instances and their loads (only with the internal token, only in a cluster)."""
    if not is_internal(request) or CLUSTER not in request.app:
        raise web.HTTPNotFound()
    cluster = request.app[CLUSTER]
    return web.json_response({"instance": cluster.instance_id, "instances": await cluster.directory.instances()})
