"""A short soak (the CI version of benchmarks/soak.py): calls come and go, some abruptly; nothing leaks."""

from __future__ import annotations

import pytest

from benchmarks.soak import run_soak
from gateway.voice.engines import Engines

pytestmark = pytest.mark.slow


async def test_calls_torn_down_politely_and_abruptly_leave_nothing_behind(engines: Engines) -> None:
    report = await run_soak(15, engines=engines, processes=2, calls=2, media_timeout=3, ice_timeout=4, warmup=8,
                            trim_interval=2, sample_every=2, progress=False)
    assert report.ok, report.problems
    assert report.calls_placed >= 8
    modes = report.calls_by_mode
    assert {"hangup", "close", "vanish"} <= set(modes), modes
    reasons = report.ended_by_reason
    assert reasons.get("timeout", 0) == modes["vanish"]  # every vanished caller was noticed
    assert reasons.get("hangup", 0) == modes["hangup"]
    assert report.vanish_freed_s["max"] <= 3 + 1.5
    base, final = report.baseline, report.final
    assert base is not None and final is not None
    for name in ("tasks", "peer_connections", "threads", "fds"):
        assert getattr(final, name) <= getattr(base, name), name
