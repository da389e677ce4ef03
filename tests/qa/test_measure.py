"""The QA tools' pure parts: figures from times and events, clips, the CLI's argument handling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.app.cli import build_parser
from qa import measure
from qa.call_cmd import base_url, network_from_args
from qa.clips import known_transcript, load_speech, write_wav
from qa.loadreport import LoadStats, format_report
from tests.support.speech import SPEECH_DIR


def blocks(start: float, end: float) -> list[float]:
    """Audible 10 ms blocks covering [start, end)."""
    return [round(start + i * 0.01, 3) for i in range(round((end - start) / 0.01))]


def test_overhead_is_what_comes_on_top_of_the_end_of_turn_silence() -> None:
    assert measure.overhead_ms(first_audible=10.85, speech_end=10.0, silence_ms=500) == 350.0
    assert measure.overhead_ms(first_audible=10.45, speech_end=10.0, silence_ms=500) == -50.0


def test_reply_onset_skips_the_tail_of_an_interrupted_reply() -> None:
    audible = blocks(0.0, 2.3) + blocks(3.5, 5.0)  # old reply until 2.3 s, the new one from 3.5 s
    assert measure.reply_onset(audible, since=2.0) == 3.5
    assert measure.reply_onset(audible, since=2.5) == 3.5
    assert measure.reply_onset(blocks(1.0, 2.0), since=0.5) == 1.0
    assert measure.reply_onset(blocks(0.0, 1.0), since=1.5) is None


def test_barge_in_stop_runs_from_the_onset_to_the_last_audible_sample() -> None:
    audible = blocks(0.0, 2.3) + blocks(4.0, 5.0)  # stopped at 2.3 s; the next reply at 4 s
    assert measure.barge_in_stop_ms(audible, onset=2.0, until=3.6) == pytest.approx(300.0)
    assert measure.barge_in_stop_ms(blocks(0.0, 1.0), onset=2.0, until=3.6) is None  # nothing heard to stop


def test_silence_duration_follows_session_updates_in_both_shapes() -> None:
    created = {"type": "session.created",
               "session": {"audio": {"input": {"turn_detection": {"silence_duration_ms": 500}}}}}
    updated = {"type": "session.updated", "session": {"turn_detection": {"silence_duration_ms": 800}}}
    assert measure.silence_duration_ms([]) is None
    assert measure.silence_duration_ms([created]) == 500
    assert measure.silence_duration_ms([created, {"type": "error"}, updated]) == 800


def test_summaries_and_word_error_rate() -> None:
    assert measure.percentile([], 50) is None
    assert measure.percentile([1, 2, 3, 4], 50) == 2.5
    assert measure.summary([100.0, 300.0, 200.0]) == {"count": 3, "p50": 200.0, "p95": 290.0, "max": 300.0,
                                                      "mean": 200.0}
    assert measure.word_error_rate("Go forward 10 meters.", "go forward ten meters") == 0.0
    assert measure.word_error_rate("one two three four", "one three four five") == 0.5
    assert measure.corpus_word_error_rate([("five five", "5"), ("seven of clubs", "7 of clubs")]) == 0.2
    assert measure.corpus_word_error_rate([]) is None
    done = {"response": {"output": [{"content": [{"type": "output_audio", "transcript": "You said: hi"}]}]}}
    assert measure.response_transcript(done) == "You said: hi"


def test_speech_loads_from_a_manifest_a_directory_or_a_file(tmp_path: Path) -> None:
    clips = load_speech(SPEECH_DIR, max_seconds=2.0)
    assert clips and all(c.seconds <= 2.0 and c.transcript for c in clips)
    assert known_transcript(SPEECH_DIR / "ps_goforward.wav") == "go forward ten meters"
    tone = (np.sin(np.arange(8000) / 5) * 8000).astype(np.int16)
    write_wav(tmp_path / "tone.wav", tone, 8000)
    (tmp_path / "notes.txt").write_text("not audio")
    [clip] = load_speech(tmp_path)
    assert clip.name == "tone.wav" and clip.transcript is None and clip.seconds == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError, match="no audio clips"):
        load_speech(tmp_path, max_seconds=0.5)
    with pytest.raises(ValueError, match="no such file"):
        load_speech(tmp_path / "missing")


def test_cli_parses_call_and_loadtest() -> None:
    args = build_parser().parse_args(["call", "http://gw:8080/v1/realtime/calls", "--play", "a.wav", "--play",
                                      "b.flac", "--barge-in-after", "800", "--net-loss", "0.1", "--net-seed", "7"])
    assert args.play == ["a.wav", "b.flac"] and args.barge_in_after == 800
    assert base_url(args.url) == "http://gw:8080"
    network = network_from_args(args)
    assert network is not None and network.loss == 0.1 and network.seed == 7 and network.direction == "both"
    args = build_parser().parse_args(["loadtest", "http://gw", "--callers", "3", "--duration", "10", "--speech", "x"])
    assert (args.callers, args.duration, args.processes, network_from_args(args)) == (3, 10.0, 1, None)


def test_load_stats_count_calls_turns_and_errors_whatever_the_arrival_order() -> None:
    stats = LoadStats(callers=3, started_at=100.0)

    def turn(at: float, overhead: float | None, error: str | None = None) -> dict[str, object]:
        return {"kind": "turn", "caller": 0, "at": at, "turn": {
            "error": error, "overhead_ms": overhead, "first_audible": None if error else 1.0, "barge_in": False,
            "interrupted": None, "barge_in_stop_ms": None, "expected": "seven of clubs", "transcript": "7 of cubs",
            "gateway": None}}

    for message in [
        {"kind": "up", "at": 101.0, "connect_ms": 40.0},
        {"kind": "up", "at": 100.5, "connect_ms": 60.0},  # arrives late from another process
        {"kind": "connect_failed", "at": 100.7, "type": "503 capacity", "message": "at capacity"},
        turn(102.0, 250.0),
        {"kind": "down", "at": 103.0},
        turn(101.2, None, "no_reply"),
        {"kind": "error", "at": 103.0, "type": "asr_failed"},
        {"kind": "exception", "at": 103.0, "type": "TimeoutError"},
    ]:
        stats.handle(message)
    assert "calls up 1/3" in stats.progress() and "turns 2" in stats.progress()
    report = stats.report({"url": "http://gw", "callers": 3, "processes": 1, "duration_s": 5, "ramp_s": 0})
    assert report["timeline"] == [(0.0, 0), (0.5, 1), (1.0, 2), (3.0, 1)]
    assert report["calls"]["connected"] == 2 and report["calls"]["max_concurrent"] == 2
    assert [t["concurrent"] for t in report["turn_records"]] == [2, 2]
    assert (report["turns"], report["replies"], report["failed_turns"]) == (2, 1, 1)
    assert report["overhead_ms"]["p50"] == 250.0 and report["wer"] == 0.333
    assert report["errors"] == {"connect:503 capacity": 1, "turn:no_reply": 1, "event:asr_failed": 1,
                                "exception:TimeoutError": 1}
    assert not report["ok"]
    assert "connect:503 capacity 1" in format_report(report)
