"""Collects what a load test's callers report, shows progress, and builds the final report.

Callers (in this process or in worker processes) emit plain dict messages:
``up``/``down`` when a call starts or ends, ``connect_failed``, ``turn`` (a
:meth:`TurnResult.to_dict`), ``error`` (an ``error`` event's code) and
``exception``, ``refused`` (a refusal with ``Retry-After``; the caller tries again) and
``never_admitted`` (refused until the end). Times are wall-clock seconds (``time.time()``), comparable
across processes.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from typing import Any, TextIO

from qa import measure, slo


class LoadStats:
    def __init__(self, *, callers: int, started_at: float) -> None:
        self.callers = callers
        self.started_at = started_at
        self.up = 0
        self.connected = 0
        self.connect_failures = 0
        self.refusals = 0
        self.refused_callers: set[int] = set()
        self.never_admitted = 0
        self.connect_ms: list[float] = []
        self.turns: list[dict[str, Any]] = []
        self.lost: list[dict[str, Any]] = []  # a failed turn per caller exception: the SLO counts them
        self.errors: Counter[str] = Counter()
        self._changes: list[tuple[float, int]] = []  # (seconds since the start, +1 up / -1 down)
        self.workers_done = 0

    def handle(self, message: dict[str, Any]) -> None:
        kind = message["kind"]
        at = round(message.get("at", time.time()) - self.started_at, 3)
        if kind == "up":
            self.up += 1
            self.connected += 1
            self.connect_ms.append(message["connect_ms"])
            self._changes.append((at, 1))
        elif kind == "down":
            self.up -= 1
            self._changes.append((at, -1))
        elif kind == "connect_failed":
            self.connect_failures += 1
            self.errors[f"connect:{message['type']}"] += 1
        elif kind == "refused":
            self.refusals += 1
            self.refused_callers.add(message.get("caller", -1))
        elif kind == "never_admitted":
            self.never_admitted += 1
        elif kind == "turn":
            turn = {**message["turn"], "caller": message["caller"], "at": at}
            self.turns.append(turn)
            if turn["error"]:
                self.errors[f"turn:{turn['error']}"] += 1
        elif kind == "error":
            self.errors[f"event:{message['type']}"] += 1
        elif kind == "exception":
            self.errors[f"exception:{message['type']}"] += 1
            self.lost.append({"caller": message.get("caller", -1), "at": at, "first_audible": None, "overhead_ms": None,
                              "error": f"exception:{message['type']}"})
        elif kind == "worker_done":
            self.workers_done += 1

    @property
    def timeline(self) -> list[tuple[float, int]]:
        """(seconds since the start, calls up from then on), in time order whatever the arrival order."""
        points, up = [(0.0, 0)], 0
        for at, change in sorted(self._changes):
            up += change
            points.append((at, up))
        return points


    def _values(self, key: str) -> list[float]:
        return [t[key] for t in self.turns if t.get(key) is not None]

    def progress(self) -> str:
        """One line of live progress."""
        overheads = self._values("overhead_ms")
        p50, p95 = measure.percentile(overheads, 50), measure.percentile(overheads, 95)
        figures = "–" if p50 is None else f"p50 {p50:.0f} ms p95 {p95:.0f} ms"
        return (f"[{time.time() - self.started_at:5.0f} s] calls up {self.up}/{self.callers}"
                f" · connect failures {self.connect_failures} · refusals {self.refusals} · turns {len(self.turns)}"
                f" · overhead {figures} · errors {sum(self.errors.values())}")

    def report(self, options: dict[str, Any], objective: slo.Slo | None = None) -> dict[str, Any]:
        timeline = self.timeline
        times = [at for at, _ in timeline]
        for turn in self.turns + self.lost:  # calls up when the caller stopped speaking (or failed)
            turn["concurrent"] = max(1, timeline[bisect.bisect_right(times, turn["at"]) - 1][1])
        replies = [t for t in self.turns if t.get("first_audible") is not None]
        barge_ins = [t for t in self.turns if t["barge_in"]]
        first_packet = [t["gateway"]["stages_ms"]["first_packet_sent"] for t in self.turns
                        if (t.get("gateway") or {}).get("stages_ms", {}).get("first_packet_sent") is not None]
        return {
            **options,
            "wall_s": round(time.time() - self.started_at, 2),
            "calls": {"connected": self.connected, "connect_failures": self.connect_failures,
                      "max_concurrent": max(n for _, n in timeline), "connect_ms": measure.summary(self.connect_ms),
                      "refusals": self.refusals, "refused_callers": len(self.refused_callers),
                      "never_admitted": self.never_admitted},
            "turns": len(self.turns),
            "replies": len(replies),
            "failed_turns": sum(1 for t in self.turns if t["error"]),
            "overhead_ms": measure.summary(self._values("overhead_ms")),
            "barge_ins": len(barge_ins),
            "interrupted": sum(1 for t in barge_ins if t["interrupted"]),
            "barge_in_stop_ms": measure.summary(self._values("barge_in_stop_ms")),
            "gateway_first_packet_ms": measure.summary(first_packet),
            "events_late_ms": measure.summary(self._values("events_late_ms")),
            "replies_with_underrun": sum(1 for t in self.turns if t.get("underrun_ms")),
            "replies_stalled": sum(1 for t in self.turns if t.get("stall_ms")),
            "underrun_ms": measure.summary([v for v in self._values("underrun_ms") if v]),
            "wer": measure.corpus_word_error_rate((t["expected"], t["transcript"] or "") for t in self.turns
                                                  if t.get("expected") and not t["error"]),
            "errors": dict(self.errors.most_common()),
            "ok": bool(replies) and not self.errors,
            "slo": slo.report(self.turns + self.lost, objective or slo.Slo()),
            "timeline": timeline,
            "turn_records": self.turns,
        }


class Progress:
    """Live progress on a stream: rewritten in place on a terminal, a line every few seconds otherwise."""

    def __init__(self, stream: TextIO | None, stats: LoadStats) -> None:
        self._stream = stream
        self._stats = stats
        self._tty = bool(stream is not None and stream.isatty())
        self._last = 0.0

    def tick(self) -> None:
        if self._stream is None:
            return
        now = time.monotonic()
        if self._tty:
            self._stream.write("\r\x1b[K" + self._stats.progress())
        elif now - self._last >= 5:
            self._stream.write(self._stats.progress() + "\n")
        else:
            return
        self._last = now
        self._stream.flush()

    def done(self) -> None:
        if self._stream is not None:
            self._stream.write(("\r\x1b[K" if self._tty else "") + self._stats.progress() + "\n")
            self._stream.flush()


def _ms(summary: dict[str, Any], *keys: str) -> str:
    if not summary["count"]:
        return "–"
    return " · ".join(f"{key} {summary[key]:.0f} ms" for key in keys)


def format_report(report: dict[str, Any]) -> str:
    calls = report["calls"]
    errors = ", ".join(f"{kind} {count}" for kind, count in report["errors"].items()) or "none"
    lines = [
        f"loadtest {report['url']} · {report['callers']} callers in {report['processes']} process(es)"
        f" · {report['duration_s']:g} s (ramp {report['ramp_s']:g} s) · took {report['wall_s']:.1f} s",
        f"calls      {calls['connected']} connected, {calls['connect_failures']} failed to connect"
        f" (connect {_ms(calls['connect_ms'], 'p50', 'max')}), at most {calls['max_concurrent']} at once",
        f"refused    {calls.get('refusals', 0)} times with Retry-After ({calls.get('refused_callers', 0)} callers,"
        f" {calls.get('never_admitted', 0)} never admitted)",
        f"turns      {report['turns']} ({report['replies']} replies heard, {report['failed_turns']} failed),"
        f" {report['barge_ins']} barge-ins ({report['interrupted']} interrupted a reply)",
        f"overhead   {_ms(report['overhead_ms'], 'p50', 'p95', 'max')}",
        f"barge-in   stop {_ms(report['barge_in_stop_ms'], 'p50', 'max')}",
        f"gateway    first reply packet after the end of speech {_ms(report['gateway_first_packet_ms'], 'p50', 'max')}",
    ]
    underruns = report.get("replies_with_underrun", 0)
    lines.append(f"underruns  {underruns} replies had their audio run out mid-reply"
                 + (f" ({_ms(report['underrun_ms'], 'p50', 'max')} of silence)" if underruns else ""))
    late = report.get("events_late_ms") or {}
    if late.get("count"):
        lines.append(f"events     {late['count']} replies were heard before their response.created arrived"
                     f" (by {_ms(late, 'p50', 'max')})")
    lines.append(f"stalls     {report.get('replies_stalled', 0)} replies had a silence of ≥ 700 ms inside, as heard")
    objective = report.get("slo")
    if objective:
        per_call = objective["per_call"]
        lines.append(f"SLO        {objective['slo']}: met by {per_call['met']}/{per_call['calls']} admitted calls;"
                     f" capacity at the SLO {objective['capacity']} concurrent calls")
    if report["wer"] is not None:
        lines.append(f"WER        {report['wer']:.3f} (all turns' words, against the manifest's transcripts)")
    lines.append(f"errors     {errors}")
    lines.append("result     " + ("OK" if report["ok"] else "FAILED"))
    return "\n".join(lines)
