"""The load test's plot: overhead over time (with the calls up), and overhead versus concurrent calls.

Drawn with matplotlib's Agg canvas directly (no pyplot, no display, no global state).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from qa import measure


def plot_loadtest(report: dict[str, Any], path: str | Path) -> None:
    turns = report["turn_records"]
    measured = [t for t in turns if t.get("overhead_ms") is not None]
    stops = [t for t in turns if t.get("barge_in_stop_ms") is not None]
    figure = Figure(figsize=(12, 4.8), layout="constrained")
    FigureCanvasAgg(figure)
    over_time, versus_calls = figure.subplots(1, 2)

    over_time.scatter([t["at"] for t in measured], [t["overhead_ms"] for t in measured], s=16,
                      label="overhead per turn", color="tab:blue")
    if stops:
        over_time.scatter([t["at"] for t in stops], [t["barge_in_stop_ms"] for t in stops], s=22, marker="x",
                          label="barge-in stop", color="tab:red")
    over_time.set_xlabel("seconds since the start")
    over_time.set_ylabel("ms")
    over_time.set_ylim(bottom=min(0.0, *(t["overhead_ms"] for t in measured)) if measured else 0.0)
    over_time.set_title("overhead over time")
    over_time.grid(alpha=0.3)
    calls = over_time.twinx()
    timeline = report["timeline"]
    calls.step([t for t, _ in timeline], [n for _, n in timeline], where="post", color="tab:gray", alpha=0.6,
               label="calls up")
    calls.set_ylabel("calls up")
    calls.set_ylim(0, max(2, max(n for _, n in timeline) + 1))
    calls.yaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = over_time.get_legend_handles_labels()
    extra_handles, extra_labels = calls.get_legend_handles_labels()
    over_time.legend(handles + extra_handles, labels + extra_labels, loc="lower center", fontsize="small",
                     ncols=3)

    by_calls: dict[int, list[float]] = defaultdict(list)
    for turn in measured:
        by_calls[turn["concurrent"]].append(turn["overhead_ms"])
    versus_calls.scatter([t["concurrent"] for t in measured], [t["overhead_ms"] for t in measured], s=16,
                         alpha=0.5, color="tab:blue", label="turns")
    levels = sorted(by_calls)
    if levels:
        versus_calls.plot(levels, [measure.percentile(by_calls[n], 50) for n in levels], "o-", color="tab:green",
                          label="p50")
        versus_calls.plot(levels, [measure.percentile(by_calls[n], 95) for n in levels], "s--",
                          color="tab:orange", label="p95")
        versus_calls.legend(loc="lower center", fontsize="small", ncols=3)
    versus_calls.set_xlabel("concurrent calls")
    versus_calls.xaxis.set_major_locator(MaxNLocator(integer=True))
    versus_calls.set_ylim(bottom=min(0.0, *(t["overhead_ms"] for t in measured)) if measured else 0.0)
    versus_calls.set_ylabel("overhead (ms)")
    versus_calls.set_title("overhead versus concurrent calls")
    versus_calls.grid(alpha=0.3)
    overhead = report["overhead_ms"]
    figures = f" · overhead p50 {overhead['p50']:.0f} ms, p95 {overhead['p95']:.0f} ms" if overhead["count"] else ""
    figure.suptitle(f"{report['url']}: {report['callers']} callers, {report['duration_s']:g} s{figures}")
    figure.savefig(path, dpi=100)
