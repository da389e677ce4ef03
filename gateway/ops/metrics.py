"""Prometheus metrics (``GET /metrics``), fed as a :class:`~gateway.observers.CallObserver`.

Each app has its own ``CollectorRegistry`` (never the global one), so several
apps in one process (tests) keep separate counts. Labels take values from small
fixed sets (end reasons, error codes, turn stages, engine names): never a call id.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.ops.observers import TURN_STAGES, CallObserver, TurnReport

logger = logging.getLogger(__name__)

PREFIX = "voice_gateway"

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
OVERHEAD_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
BARGE_IN_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

_LABEL = re.compile(r"[a-z][a-z0-9_]{0,47}")

QueueDepths = Callable[[], Mapping[str, int]]


def bounded_label(value: str) -> str:
    """``value`` if it looks like one of our stable codes, else ``"other"``."""
    return value if _LABEL.fullmatch(value) else "other"


class GatewayMetrics(CallObserver):
    def __init__(self, *, queue_depths: QueueDepths | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.active_calls = Gauge(f"{PREFIX}_active_calls", "Calls in progress", registry=r)
        self.calls_started = Counter(f"{PREFIX}_calls_started", "Calls admitted and answered", registry=r)
        self.calls_ended = Counter(f"{PREFIX}_calls_ended", "Calls ended, by reason", ["reason"], registry=r)
        self.calls_rejected = Counter(f"{PREFIX}_calls_rejected", "Calls refused, by error code", ["code"],
                                      registry=r)
        self.call_duration = Histogram(f"{PREFIX}_call_duration_seconds", "Duration of ended calls",
                                       buckets=DURATION_BUCKETS, registry=r)
        self.turns = Counter(f"{PREFIX}_turns", "User turns committed", registry=r)
        self.barge_ins = Counter(f"{PREFIX}_barge_ins", "Replies interrupted by the caller's speech", registry=r)
        self.errors = Counter(f"{PREFIX}_errors", "Error events sent to callers, by code", ["code"], registry=r)
        self.server_events_dropped = Counter(f"{PREFIX}_server_events_dropped", "Server events dropped because "
                                             "too many waited for the caller's event channel to open", registry=r)
        self.history_drops = Counter(f"{PREFIX}_history_items_dropped", "Conversation items dropped, oldest "
                                     "first, because a call's history was over its bounds", registry=r)
        self.reply_audio = Counter(f"{PREFIX}_reply_audio_seconds", "Reply audio sent to callers", registry=r)
        self.reply_underruns = Counter(f"{PREFIX}_reply_underruns", "Replies whose audio ran out before they were "
                                       "finished (a gap the caller heard)", registry=r)
        self.reply_underrun_seconds = Counter(f"{PREFIX}_reply_underrun_seconds",
                                              "Silence sent in the middle of replies because their audio ran out",
                                              registry=r)
        self.turn_latency = Histogram(
            f"{PREFIX}_turn_latency_seconds",
            "Time from the end of the caller's speech (VAD) to each stage of the reply",
            ["stage"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.turn_overhead = Histogram(
            f"{PREFIX}_turn_overhead_seconds",
            "Turn confirmed (end of the silence window) to first reply packet sent",
            buckets=OVERHEAD_BUCKETS, registry=r,
        )
        self.speech_over_replies = Counter(f"{PREFIX}_speech_over_reply", "Speech over a reply: paused, then "
                                         "resumed (a false interruption) or cancelled", ["outcome"], registry=r)
        self.end_of_turn_seconds = Histogram(f"{PREFIX}_end_of_turn_seconds", "semantic_vad: the end-of-turn model's "
                                     "time per judged pause", ["complete"],
                                     buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0), registry=r)
        self.barge_in_stop = Histogram(f"{PREFIX}_barge_in_stop_seconds",
                                       "Caller speech onset to the reply's audio being cleared",
                                       buckets=BARGE_IN_BUCKETS, registry=r)
        self.asr_rtf = Histogram(f"{PREFIX}_asr_real_time_factor", "Final transcription compute time / audio time",
                                 buckets=RTF_BUCKETS, registry=r)
        self.tts_rtf = Histogram(f"{PREFIX}_tts_real_time_factor", "Clause synthesis wall time / audio time",
                                 buckets=RTF_BUCKETS, registry=r)
        self.loop_lag = Histogram(f"{PREFIX}_event_loop_lag_seconds", "How late the event loop woke a timer",
                                  buckets=LAG_BUCKETS, registry=r)
        self.events_dropped = Counter(f"{PREFIX}_lifecycle_events_dropped",
                                      "Lifecycle events lost: queue full or delivery failed", ["sink"], registry=r)
        self.event_retries = Counter(f"{PREFIX}_lifecycle_event_retries", "Lifecycle event deliveries retried",
                                     ["sink"], registry=r)
        # A cluster (cluster.redis_url; gateway/cluster): Redis failures, forwarded hang-ups, whether Redis answers.
        self.cluster_redis_failures = Counter(f"{PREFIX}_cluster_redis_failures", "Cluster Redis commands that "
                                              "failed (unreachable, or past cluster.redis_timeout_seconds)", registry=r)
        self.cluster_hangups_forwarded = Counter(f"{PREFIX}_cluster_hangups_forwarded",
                                                 "Hang-ups forwarded to the instance holding the call", registry=r)
        self.cluster_reachable = Gauge(f"{PREFIX}_cluster_reachable", "1 while this instance's heartbeat reaches "
                                       "the cluster's Redis (absent outside a cluster)", registry=None)
        if queue_depths is not None:
            r.register(_QueueDepthCollector(queue_depths))

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)

    content_type = CONTENT_TYPE_LATEST

    # ------------------------------------------------------------ observer

    def call_started(self, call_id: str) -> None:
        self.calls_started.inc()
        self.active_calls.inc()

    def call_rejected(self, code: str) -> None:
        self.calls_rejected.labels(bounded_label(code)).inc()

    def call_ended(self, call_id: str, reason: str, duration_s: float, turns: int) -> None:
        self.active_calls.dec()
        self.calls_ended.labels(bounded_label(reason)).inc()
        self.call_duration.observe(duration_s)

    def turn_completed(self, call_id: str, report: TurnReport) -> None:
        self.turns.inc()
        for stage in TURN_STAGES:
            value = report.latency_ms.get(stage)
            if value is not None:
                self.turn_latency.labels(stage).observe(max(0.0, value) / 1000)
        if report.overhead_ms is not None:
            self.turn_overhead.observe(max(0.0, report.overhead_ms) / 1000)

    def barge_in(self, call_id: str, stop_s: float | None) -> None:
        self.barge_ins.inc()
        if stop_s is not None:
            self.barge_in_stop.observe(max(0.0, stop_s))

    def speech_over_reply(self, call_id: str, outcome: str) -> None:
        self.speech_over_replies.labels(bounded_label(outcome)).inc()

    def end_of_turn_judged(self, compute_s: float, complete: bool) -> None:
        self.end_of_turn_seconds.labels(str(complete).lower()).observe(max(0.0, compute_s))

    def reply_played(self, call_id: str, played_s: float, underrun_s: float) -> None:
        self.reply_audio.inc(played_s)
        if underrun_s > 0:
            self.reply_underruns.inc()
            self.reply_underrun_seconds.inc(underrun_s)

    def error(self, call_id: str, code: str) -> None:
        self.errors.labels(bounded_label(code)).inc()

    def server_event_dropped(self, call_id: str) -> None:
        self.server_events_dropped.inc()

    def history_items_dropped(self, call_id: str, count: int) -> None:
        self.history_drops.inc(count)

    def asr_finished(self, audio_s: float, compute_s: float) -> None:
        if audio_s > 0:
            self.asr_rtf.observe(compute_s / audio_s)

    def tts_finished(self, audio_s: float, compute_s: float) -> None:
        if audio_s > 0:
            self.tts_rtf.observe(compute_s / audio_s)


class _QueueDepthCollector(Collector):
    """``voice_gateway_engine_queue_depth{engine}``, read from the engines at scrape time."""

    def __init__(self, read: QueueDepths) -> None:
        self._read = read

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"{PREFIX}_engine_queue_depth", "Inference jobs queued or running, per engine",
                                 labels=["engine"])

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        try:
            depths = self._read()
        except Exception:
            logger.exception("metrics: reading engine queue depths failed")
            depths = {}
        for engine, depth in depths.items():
            family.add_metric([engine], depth)
        yield family


async def sample_loop_lag(observe: Callable[[float], None], interval: float = 0.25) -> None:
    """Measure, forever, how late a ``sleep(interval)`` wakes up (cancel to stop)."""
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - started - interval))
