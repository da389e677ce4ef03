"""Health, readiness and the demo page.

* ``GET /healthz``: the process answers (at once, while the models load).
* ``GET /readyz``: 200 when a call would be taken; 503 with a ``reason`` (``engines_not_loaded``,
  ``draining``, ``at_capacity``) when not — the same decision as a new call's admission
  (:meth:`SessionRegistry.refusal`: ``limits.max_calls``, the measured load and the admission model
  of :mod:`gateway.session.admission`), with its ``Retry-After``, ``headroom_calls`` and ``degradation``. A
  front process answers it for its workers (:mod:`gateway.app.front`).
* ``/metrics`` gets the admission's gauges (:func:`register_admission_metrics`): headroom, projected and
  measured CPU use, the learned call costs, the degradation level.
* ``GET /internal/load``: this process's load, for a front process; 404 without the internal token.
* ``GET /internal/cluster``: the live instances of a cluster and their published loads (``cluster.redis_url``;
  404 without the internal token or outside a cluster). A cluster instance's ``/readyz`` is 503
  ``cluster_unavailable`` while its heartbeat does not reach Redis (new calls would get that 503 too).
* ``/`` and ``/static/``: the demo page (``web_demo/``), the same in single-process and front apps.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.app.keys import CLUSTER, REGISTRY
from gateway.ops.metrics import PREFIX
from gateway.session.registry import SessionRegistry
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


#: /readyz reasons for the codes of the admission's refusals.
_REASONS = {"engine_unavailable": "engines_not_loaded", "draining": "draining", "capacity": "at_capacity"}


async def _readyz(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    engines = registry.engines
    if engines is not None and not registry.draining and CLUSTER in request.app \
            and not request.app[CLUSTER].reachable:
        return web.json_response({"status": "unavailable", "reason": "cluster_unavailable"}, status=503)
    admission = registry.admission.report(len(registry))
    figures = {"headroom_calls": admission["headroom_calls"], "degradation": admission["degradation"]}
    exc = registry.refusal()
    if exc is not None:
        body: dict[str, object] = {"status": "unavailable", "reason": _REASONS.get(exc.code, exc.code)}
        if exc.code != "capacity":
            return web.json_response(body, status=503)
        headers = {"Retry-After": str(exc.retry_after or 1)}
        return web.json_response({**body, "message": exc.message, **figures}, status=503, headers=headers)
    assert engines is not None
    # Where the models run (engines.device resolved at load: cpu | cuda; remote engines: "remote").
    devices = {name: getattr(getattr(engines, name), "device", "remote") for name in ("asr", "tts")}
    return web.json_response({"status": "ready", "active_calls": len(registry), "devices": devices, **figures})


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


def register_admission_metrics(metrics: CollectorRegistry, registry: SessionRegistry) -> None:
    """The admission's figures as gauges of ``/metrics``, read at scrape time."""
    metrics.register(_AdmissionCollector(registry))


class _AdmissionCollector(Collector):
    def __init__(self, registry: SessionRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        admission = self._registry.admission
        report = admission.report(len(self._registry))
        gauges = [
            ("admission_headroom_calls", "More calls the admission would take now (0: refusing)",
             report["headroom_calls"]),
            ("admission_projected_utilization", "Projected CPU use with one more call at its peak cost, over "
             "the CPUs this process may use", report["projected_utilization"]),
            ("cpu_utilization", "Busy share of the CPUs this process may use (the machine's, over 2 s)",
             report["utilization"]),
            ("degradation_level", "0 normal, 1 partial transcripts shed, 2 lower-cost decoding", admission.level),
        ]
        for name, help_text, value in gauges:
            family = GaugeMetricFamily(f"{PREFIX}_{name}", help_text)
            family.add_metric([], float(value))
            yield family
        cost = GaugeMetricFamily(f"{PREFIX}_call_cost_cores", "Learned CPU cost of one call, by state",
                                 labels=["state"])
        cost.add_metric(["idle"], admission.model.idle)
        cost.add_metric(["active"], admission.model.active)
        yield cost
