"""``voice-gateway loadtest``: concurrent callers against a real in-process gateway."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from qa.loadreport import format_report
from qa.loadtest import LoadOptions, run_loadtest
from tests.support.speech import SPEECH_DIR, utterance

pytestmark = pytest.mark.slow

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Clips without long pauses (a pause over the end-of-turn silence makes two turns) or quiet tails.
CLIPS = ["timit_LDC93S1.wav", "ps_cards_005.wav", "ps_cards_002.wav", "ps_cards_003.wav"]


def manifest(directory: Path) -> str:
    path = directory / "speech.tsv"
    rows = [f"{SPEECH_DIR / name}\t{utterance(name).transcript}" for name in CLIPS]
    path.write_text("file\ttranscript\n" + "\n".join(rows) + "\n")
    return str(path)


@pytest.mark.parametrize("processes", [1, 2])
async def test_two_callers_give_a_complete_report_and_a_plot(gateway_url: str, tmp_path: Path,
                                                              processes: int) -> None:
    progress = io.StringIO()
    options = LoadOptions(gateway_url, callers=2, duration_s=6, speech=manifest(tmp_path),
                          processes=processes, out=str(tmp_path / "out"), max_clip_s=4.0, barge_in_rate=0.5, seed=3)
    report = await run_loadtest(options, progress=progress)
    print(format_report(report))

    assert report["calls"]["connected"] == 2 and report["calls"]["connect_failures"] == 0
    assert report["calls"]["max_concurrent"] == 2
    assert report["turns"] >= 2 and report["replies"] >= 2
    assert report["ok"], report["errors"]
    overhead = report["overhead_ms"]
    assert overhead["count"] >= 2 and -300 < overhead["p50"] <= overhead["p95"] <= overhead["max"] < 3000
    assert report["wer"] is not None and report["wer"] <= 0.25
    assert {t["caller"] for t in report["turn_records"]} == {0, 1}
    assert all(t["concurrent"] in (1, 2) for t in report["turn_records"])
    for stop in (t["barge_in_stop_ms"] for t in report["turn_records"] if t["barge_in_stop_ms"] is not None):
        assert 0 <= stop < 3000
    assert "calls up" in progress.getvalue()

    written = json.loads((tmp_path / "out" / "loadtest.json").read_text())
    assert written["turns"] == report["turns"] and written["overhead_ms"] == overhead
    png = (tmp_path / "out" / "loadtest.png").read_bytes()
    assert png.startswith(PNG_SIGNATURE) and len(png) > 10_000
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (1200, 480)
    assert "overhead" in format_report(report)
