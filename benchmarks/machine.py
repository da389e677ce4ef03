"""The speed of the machine a benchmark ran on, measured in the same run.

Machines of the same kind differ 2–3× in speed, so an absolute figure (ms of
compute, calls held) means nothing without this. Two probes, each the median of
several runs: a pure-Python loop (what the event loop, aiortc and the per-frame
code cost) and a single-threaded float32 matrix product (what the models cost).
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np


def _python_probe() -> float:
    started = time.perf_counter()
    total = 0
    for i in range(2_000_000):
        total += i & 7
    assert total > 0
    return (time.perf_counter() - started) * 1000


def _numpy_probe() -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((384, 384), dtype=np.float32)
    started = time.perf_counter()
    for _ in range(20):
        a = np.tanh(a @ a * 0.01)
    return (time.perf_counter() - started) * 1000


def machine_speed(repeats: int = 5) -> dict[str, Any]:
    """``python_loop_ms`` and ``matmul_ms`` (lower is faster), the CPU model and count."""
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    except OSError:
        pass
    return {
        "python_loop_ms": round(statistics.median(_python_probe() for _ in range(repeats)), 1),
        "matmul_ms": round(statistics.median(_numpy_probe() for _ in range(repeats)), 1),
        "cpu": model,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


if __name__ == "__main__":
    print(machine_speed())
