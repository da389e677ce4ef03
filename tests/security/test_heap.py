"""The heap trimmer: after calls end, garbage is collected and freed memory returned, at most so often."""

from __future__ import annotations

import asyncio

import pytest

from gateway.ops import heap
from gateway.ops.heap import HeapTrimmer


async def test_call_ends_trim_at_once_then_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []

    def fake_trim(pad: int) -> int:
        trims.append(pad)
        return 1

    monkeypatch.setattr(heap, "libc_malloc_trim", lambda: fake_trim)
    trimmer = HeapTrimmer(min_interval=1.0)
    trimmer.call_ended("rtc_1", "hangup", 1.0, 0)
    await asyncio.sleep(0.05)
    assert trims == [0]
    for i in range(5):  # a burst of ends: one trailing trim, at the end of the interval
        trimmer.call_ended(f"rtc_{i}", "hangup", 1.0, 0)
    await asyncio.sleep(0.5)
    assert trims == [0]
    await asyncio.sleep(0.7)
    assert trims == [0, 0] and trimmer.trims == 2


async def test_without_glibc_nothing_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "libc_malloc_trim", lambda: None)
    trimmer = HeapTrimmer(min_interval=0.0)
    trimmer.call_ended("rtc_1", "hangup", 1.0, 0)
    assert trimmer.trims == 0


def test_glibc_malloc_trim_is_found_here() -> None:
    assert heap.libc_malloc_trim() is not None  # the CI and the container run glibc
