"""Whether a load test's admitted calls met the service-level objective, and at how many calls at once.

The objective (issue 18) holds for a set of turns when:

* the p95 of their overhead is at most ``overhead_p95_ms`` (500 ms); a turn that got no reply counts
  as an infinite overhead, so failures cannot hide;
* at most ``stalled_share`` (1 %) of the replies stalled (a silence of ≥ 700 ms inside the reply, as
  the caller heard it: :data:`qa.dialogue.STALL_S`, the same instrument for every peer);
* the p95 of the barge-in stops (speech onset → the interrupted reply falls silent) is at most
  ``barge_in_p95_ms`` (400 ms).

Turns are grouped by how many calls were up when the caller stopped speaking (the load test's
``concurrent``). **Capacity at the SLO** is the largest N such that the turns at every level up to N
met the objective: a lucky level above a failing one does not count. Refused callers are not
admitted calls: they count only as refusals.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from qa import measure


@dataclass(frozen=True)
class Slo:
    overhead_p95_ms: float = 500.0
    stalled_share: float = 0.01
    barge_in_p95_ms: float = 400.0

    def __post_init__(self) -> None:
        if self.overhead_p95_ms <= 0 or self.barge_in_p95_ms <= 0 or not 0 <= self.stalled_share <= 1:
            raise ValueError("SLO bounds must be positive (the stalled share 0..1)")

    def describe(self) -> str:
        return (f"p95 overhead ≤ {self.overhead_p95_ms:.0f} ms, ≤ {self.stalled_share:.0%} of replies stalled, "
                f"barge-in stop p95 ≤ {self.barge_in_p95_ms:.0f} ms")


def judge(turns: Sequence[dict[str, Any]], slo: Slo) -> dict[str, Any]:
    """The objective's figures over ``turns`` (load test turn records) and whether each bound held."""
    overheads = [math.inf if t.get("first_audible") is None else t["overhead_ms"] for t in turns
                 if t.get("first_audible") is None or t.get("overhead_ms") is not None]
    replies = [t for t in turns if t.get("first_audible") is not None]
    stalled = sum(1 for t in replies if t.get("stall_ms"))
    stops = [t["barge_in_stop_ms"] for t in turns if t.get("barge_in_stop_ms") is not None]
    p95 = percentile(overheads, 95)
    stop_p95 = measure.percentile(stops, 95)
    share = stalled / len(replies) if replies else 0.0
    checks = {"overhead": p95 is not None and p95 <= slo.overhead_p95_ms,
              "stalls": share <= slo.stalled_share,
              "barge_in": stop_p95 is None or stop_p95 <= slo.barge_in_p95_ms}
    return {"turns": len(turns), "replies": len(replies), "failed": len(turns) - len(replies),
            "overhead_p50_ms": measure.percentile([o for o in overheads if o != math.inf], 50),
            "overhead_p95_ms": None if p95 is None else (p95 if p95 != math.inf else "inf"),
            "stalled_replies": stalled, "stalled_share": round(share, 4), "barge_ins": len(stops),
            "barge_in_p95_ms": stop_p95, "checks": checks, "met": all(checks.values())}


def percentile(values: Sequence[float], q: float) -> float | None:
    """:func:`qa.measure.percentile` where values may be infinite (failed turns): inf once the rank reaches one."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    if ordered[high] == math.inf:
        return ordered[low] if rank == low and ordered[low] != math.inf else math.inf
    return measure.percentile(ordered, q)


def by_level(turns: Iterable[dict[str, Any]], slo: Slo) -> dict[int, dict[str, Any]]:
    """:func:`judge` of the turns at each number of concurrent calls."""
    levels: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for turn in turns:
        levels[int(turn.get("concurrent") or 0)].append(turn)
    # "calls": each call judged on its own turns at that level (with 2–3 turns each, its p95 is its worst)
    return {n: judge(levels[n], slo) | {"calls": per_call(levels[n], slo)} for n in sorted(levels) if n > 0}


def capacity(levels: dict[int, dict[str, Any]]) -> int:
    """The largest N whose level and every level below it (that had turns) met the objective; 0 if none."""
    best = 0
    for n in sorted(levels):
        if not levels[n]["met"]:
            break
        best = n
    return best


def per_call(turns: Iterable[dict[str, Any]], slo: Slo) -> dict[str, Any]:
    """How many admitted calls met the objective over all their turns."""
    calls: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for turn in turns:
        calls[int(turn["caller"])].append(turn)
    judged = {caller: judge(own, slo) for caller, own in calls.items()}
    return {"calls": len(judged), "met": sum(1 for j in judged.values() if j["met"]),
            "missed": sorted(caller for caller, j in judged.items() if not j["met"])}


def report(turns: Sequence[dict[str, Any]], slo: Slo) -> dict[str, Any]:
    """The SLO part of a load test report: per level, capacity at the SLO, per call, overall."""
    levels = by_level(turns, slo)
    return {"slo": slo.describe(), "capacity": capacity(levels), "overall": judge(turns, slo),
            "per_call": per_call(turns, slo), "levels": {str(n): j for n, j in levels.items()}}
