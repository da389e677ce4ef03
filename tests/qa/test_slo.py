"""The capacity benchmark's judgement (qa/slo.py), ramp schedule and refusal bookkeeping, on exact inputs."""

from __future__ import annotations

import math
from typing import Any

import pytest
from multidict import CIMultiDict

from qa.caller import _retry_after
from qa.dialogue import reply_stall_ms
from qa.loadreport import LoadStats, format_report
from qa.loadtest import LoadOptions
from qa.slo import Slo, by_level, capacity, judge, per_call, percentile, report

URL = "http://127.0.0.1:8080"


def turn(caller: int = 0, concurrent: int = 1, overhead: float | None = 100.0, *, stall: float = 0.0,
         stop: float | None = None) -> dict[str, Any]:
    heard = overhead is not None
    return {"caller": caller, "concurrent": concurrent, "first_audible": 1.0 if heard else None,
            "overhead_ms": overhead, "stall_ms": stall if heard else None, "barge_in_stop_ms": stop}


def test_turns_within_every_bound_meet_the_slo() -> None:
    verdict = judge([turn(overhead=o) for o in range(0, 500, 10)] + [turn(stop=300.0)], Slo())
    assert verdict["met"] and verdict["overhead_p95_ms"] <= 500 and verdict["barge_in_p95_ms"] == 300.0


def test_each_bound_fails_on_its_own() -> None:
    slow = judge([turn(overhead=100.0)] * 18 + [turn(overhead=900.0)] * 2, Slo())
    assert not slow["met"] and slow["checks"] == {"overhead": False, "stalls": True, "barge_in": True}
    stalled = judge([turn()] * 50 + [turn(stall=800.0)], Slo())  # 1 of 51 replies: ~2 % > 1 %
    assert not stalled["met"] and stalled["checks"]["stalls"] is False and stalled["stalled_replies"] == 1
    late_stop = judge([turn(stop=700.0)], Slo())
    assert not late_stop["met"] and late_stop["checks"]["barge_in"] is False


def test_a_turn_without_a_reply_counts_as_an_infinite_overhead() -> None:
    verdict = judge([turn(overhead=50.0)] * 9 + [turn(overhead=None)], Slo())
    assert verdict["failed"] == 1 and verdict["overhead_p95_ms"] == "inf" and not verdict["met"]
    # one failure in 100 stays below the 95th percentile's rank
    assert judge([turn(overhead=50.0)] * 99 + [turn(overhead=None)], Slo())["met"]
    assert percentile([1.0, 2.0, math.inf], 50) == 2.0 and percentile([1.0, math.inf], 95) == math.inf
    assert percentile([], 95) is None


def test_capacity_is_the_last_level_before_the_first_miss() -> None:
    turns = ([turn(concurrent=2)] * 5 + [turn(concurrent=4)] * 5 + [turn(concurrent=6, overhead=2000.0)] * 5
             + [turn(concurrent=8)] * 5)  # a lucky level above a failing one does not count
    levels = by_level(turns, Slo())
    assert sorted(levels) == [2, 4, 6, 8] and [levels[n]["met"] for n in (2, 4, 6, 8)] == [True, True, False, True]
    assert capacity(levels) == 4
    assert levels[6]["calls"] == {"calls": 1, "met": 0, "missed": [0]}
    assert capacity(by_level([turn(concurrent=2, overhead=600.0)], Slo())) == 0


def test_per_call_counts_the_calls_that_met_it() -> None:
    turns = [turn(caller=0)] * 3 + [turn(caller=1, overhead=800.0)] * 3
    assert per_call(turns, Slo()) == {"calls": 2, "met": 1, "missed": [1]}
    whole = report(turns, Slo())
    assert whole["capacity"] == 0 and "500 ms" in whole["slo"] and whole["levels"]["1"]["turns"] == 6


def test_slo_bounds_are_validated() -> None:
    with pytest.raises(ValueError):
        Slo(overhead_p95_ms=0)
    with pytest.raises(ValueError):
        Slo(stalled_share=2)


def test_stalls_are_gaps_of_at_least_700_ms_inside_the_reply() -> None:
    blocks = [1.0 + i * 0.01 for i in range(50)]  # 0.5 s of audio
    natural = blocks + [b + 0.89 for b in blocks]  # a 390 ms pause, as Piper leaves at a colon
    assert reply_stall_ms(natural, 1.0, 10.0) == 0
    stalled = blocks + [b + 1.5 for b in blocks]  # 1 s of silence in the middle
    assert reply_stall_ms(stalled, 1.0, 10.0) == pytest.approx(1000, abs=1)
    assert reply_stall_ms(stalled, 1.0, 1.6) == 0  # the window ends before the rest of the reply


def test_a_step_ramp_joins_callers_in_groups() -> None:
    options = LoadOptions(URL, callers=6, duration_s=60, speech="x", ramp_step=2, ramp_interval_s=10)
    assert [options.join_s(i) for i in range(6)] == [0, 0, 10, 10, 20, 20]
    linear = LoadOptions(URL, callers=4, duration_s=60, speech="x", ramp_s=8)
    assert [linear.join_s(i) for i in range(4)] == [0, 2, 4, 6]
    with pytest.raises(ValueError, match="--target"):
        LoadOptions(URL, callers=1, duration_s=1, speech="x", target="livekit")
    with pytest.raises(ValueError, match="--ramp-step"):
        LoadOptions(URL, callers=1, duration_s=1, speech="x", ramp_step=-1)


def test_refusals_are_counted_and_reported() -> None:
    stats = LoadStats(callers=3, started_at=0.0)
    for message in ({"kind": "up", "caller": 0, "connect_ms": 20.0, "at": 0.1},
                    {"kind": "refused", "caller": 1, "status": 503, "retry_after": 5, "at": 0.2},
                    {"kind": "refused", "caller": 1, "status": 503, "retry_after": 5, "at": 5.2},
                    {"kind": "refused", "caller": 2, "status": 503, "retry_after": 5, "at": 0.3},
                    {"kind": "never_admitted", "caller": 2, "at": 9.0},
                    {"kind": "turn", "caller": 0, "at": 3.0, "turn": {**turn(), "error": None, "barge_in": False}},
                    {"kind": "down", "caller": 0, "at": 9.5}):
        stats.handle(message)
    result = stats.report({"url": URL, "callers": 3, "processes": 1, "duration_s": 10, "ramp_s": 0})
    calls = result["calls"]
    assert (calls["refusals"], calls["refused_callers"], calls["never_admitted"]) == (3, 2, 1)
    assert result["ok"] and not result["errors"]  # a refusal with Retry-After is admission, not an error
    assert result["slo"]["capacity"] == 1 and result["slo"]["per_call"]["calls"] == 1
    assert "refused    3 times with Retry-After (2 callers, 1 never admitted)" in format_report(result)


def test_retry_after_is_read_from_the_refusal() -> None:
    assert _retry_after(CIMultiDict({"Retry-After": "5"})) == 5.0
    assert _retry_after(CIMultiDict()) is None
    assert _retry_after(CIMultiDict({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) is None


def test_turns_still_awaited_at_the_end_are_reported_and_the_unanswered_failed() -> None:
    from qa.dialogue import TurnResult, abandon_turns

    answered = TurnResult(1, "a.wav", 1.0, 2.0, 500, first_audible=2.8, overhead_ms=300.0)
    waiting = TurnResult(2, "b.wav", 5.0, 6.0, 500)
    done = TurnResult(3, "c.wav", 7.0, 8.0, 500, error="no_transcript")
    seen: list[TurnResult] = []
    abandon_turns([answered, waiting, done], {3}, lambda turn, until: seen.append(turn))
    assert seen == [answered, waiting]
    assert answered.error is None and waiting.error == "unanswered_at_end" and done.error == "no_transcript"
    assert judge([{**turn(), "first_audible": None} for _ in range(2)], Slo())["failed"] == 2


def test_a_call_lost_mid_turn_is_a_failed_turn_for_the_slo() -> None:
    stats = LoadStats(callers=1, started_at=0.0)
    stats.handle({"kind": "up", "caller": 0, "connect_ms": 20.0, "at": 0.1})
    for i in range(10):
        stats.handle({"kind": "turn", "caller": 0, "at": 1.0 + i,
                      "turn": {**turn(), "error": None, "barge_in": False}})
    stats.handle({"kind": "exception", "caller": 0, "type": "ConnectionError", "message": "lost", "at": 40.0})
    stats.handle({"kind": "down", "caller": 0, "at": 40.5})
    result = stats.report({"url": URL, "callers": 1, "processes": 1, "duration_s": 60, "ramp_s": 0})
    assert result["turns"] == 10 and result["errors"] == {"exception:ConnectionError": 1}
    level = result["slo"]["levels"]["1"]
    assert level["turns"] == 11 and level["failed"] == 1 and level["overhead_p95_ms"] == "inf"
    assert result["slo"]["capacity"] == 0


def test_the_capacity_benchmark_prints_capacities_ratios_and_the_machine(capsys: pytest.CaptureFixture[str],
                                                                          tmp_path: Any) -> None:
    import argparse

    from benchmarks.capacity import plot, print_results, summary

    engines = {"whisper_decode_cpu_ms": {"p50": 95.7, "mean": 102.9}, "utterances": 19, "speech_s_mean": 3.5,
               "piper_cpu_rtf": 0.08, "vad_cpu_ms_per_s": 5.5, "turn_engine_cpu_ms": 350.0, "turn_cycle_s": 7.7,
               "cpu_bound_calls": 40.0, "cores": 2, "whisper_30s_window_cpu_ms": 560.0,
               "cpu_bound_calls_30s_window": 17.5}
    machine = {"cpu": "Test CPU", "cpus": 2, "python_loop_ms": 80.0, "matmul_ms": 30.0, "load_average": [0.1, 0, 0]}
    args = argparse.Namespace(baseline_rev="8d3dea9")

    def ramp(levels: dict[int, float]) -> dict[str, Any]:
        turns = [turn(caller=i, concurrent=n, overhead=o) for n, o in levels.items() for i in range(n)]
        calls = {"connected": max(levels), "refused_callers": 1, "refusals": 3, "never_admitted": 0,
                 "connect_failures": 0, "max_concurrent": max(levels)}
        return {"slo": report(turns, Slo()), "calls": calls, "replies_with_underrun": 0, "errors": {}, "wer": None}

    results = [summary("today", ramp({2: 300.0, 4: 450.0, 6: 900.0}), engines, args),
               summary("ours", ramp({2: 200.0, 4: 250.0, 6: 300.0, 8: 2000.0}), engines, args),
               summary("pipecat", ramp({2: 400.0, 4: 800.0}), engines, args)]
    assert [r["capacity"] for r in results] == [4, 6, 2]
    assert results[1]["calls_per_core"] == 3.0 and results[1]["share_of_cpu_bound"] == 0.15
    print_results(results, machine, engines)
    out = capsys.readouterr().out
    assert "Whisper decode 95.7 ms CPU p50" in out and "CPU-bound limit 40.0 calls on 2 cores" in out
    assert "capacity ours / today:   1.50 (target ≥ 1.5)" in out
    assert "capacity ours / pipecat: 3.00 (target ≥ 2)" in out
    assert "2000.0*O" in out  # the level that missed, and on which bound
    plot(results, tmp_path / "capacity.png")
    assert (tmp_path / "capacity.png").read_bytes().startswith(b"\x89PNG")
