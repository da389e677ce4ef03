"""Helpers for driving calls in tests."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.config import GatewayConfig
from qa.caller import Caller, speech_end_sample, speech_start_sample


def without_load_shedding(config: GatewayConfig) -> GatewayConfig:
    """``config`` with admission by measured load (event-loop lag, ASR queue wait, CPU, the admission model) off.

    The suite shares its machine with its own engines and with whatever else runs there; a test
    gateway that refuses calls because the machine is busy (503 "event loop running 173 ms late", seen
    on two cores with other programs running) fails tests that are about something else. Load shedding itself is
    tested on :class:`gateway.session.load.LoadMonitor` (tests/gateway/test_capacity.py) and the admission model
    in tests/session/test_admission.py and tests/gateway/test_admission.py.
    """
    limits = dataclasses.replace(config.limits, max_loop_lag_ms=0, max_asr_wait_ms=0, max_cpu_percent=0)
    admission = dataclasses.replace(config.admission, enabled=False)
    return dataclasses.replace(config, limits=limits, admission=admission)


def trimmed(samples: npt.NDArray[np.float32], rate: int = 16_000) -> npt.NDArray[np.float32]:
    """The clip without its leading and trailing silence."""
    return samples[speech_start_sample(samples, rate) : speech_end_sample(samples, rate)]


def silence(seconds: float, rate: int = 16_000) -> npt.NDArray[np.float32]:
    return np.zeros(int(seconds * rate), np.float32)


async def hear(caller: Caller, seconds: float, *, since: float, within: float = 30.0) -> None:
    """Wait until ``seconds`` of audible reply arrived since ``since``.

    Not a fixed sleep after ``output_audio_buffer.started``: on a busy machine a reply's synthesis
    falls behind, and the gaps it leaves are not played (1.5 s after the start, 651 ms had been).
    """
    deadline = time.monotonic() + within
    while caller.received.audible_seconds(since=since) < seconds:
        if time.monotonic() > deadline:
            raise TimeoutError(f"heard less than {seconds:g} s of the reply within {within:g} s")
        await asyncio.sleep(0.02)


def event_types(caller: Caller, since: float = 0.0) -> list[str]:
    return [event["type"] for at, event in caller.events if at >= since]


def index_of(types: list[str], name: str, start: int = 0) -> int:
    assert name in types[start:], f"{name} missing from {types[start:]}"
    return types.index(name, start)


def only(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(events) == 1, f"expected one event, got {len(events)}: {events}"
    return events[0]
