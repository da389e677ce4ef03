"""Helpers for driving calls in tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from qa.caller import Caller, speech_end_sample, speech_start_sample


def trimmed(samples: npt.NDArray[np.float32], rate: int = 16_000) -> npt.NDArray[np.float32]:
    """The clip without its leading and trailing silence."""
    return samples[speech_start_sample(samples, rate) : speech_end_sample(samples, rate)]


def silence(seconds: float, rate: int = 16_000) -> npt.NDArray[np.float32]:
    return np.zeros(int(seconds * rate), np.float32)


def event_types(caller: Caller, since: float = 0.0) -> list[str]:
    return [event["type"] for at, event in caller.events if at >= since]


def index_of(types: list[str], name: str, start: int = 0) -> int:
    assert name in types[start:], f"{name} missing from {types[start:]}"
    return types.index(name, start)


def only(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(events) == 1, f"expected one event, got {len(events)}: {events}"
    return events[0]
