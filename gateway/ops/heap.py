"""Keeping the gateway's memory flat: the garbage of ended calls collected, and given back to the OS.

Once the models are loaded, :func:`freeze_long_lived` moves every object to
the collector's permanent generation: a full collection then scans only what
calls created (milliseconds instead of ~90 ms over the models' ~200,000
objects), so that a full collection is cheap enough to run on the event loop.
``HeapTrimmer`` runs one after a call ends: left to CPython's allocation-count
heuristics, full collections hardly ever ran (a few Python objects hold large
native buffers — frames, codec and inference buffers — in aiortc's reference
cycles), and the soak saw 5,000–7,500 garbage objects and up to 100 MB pile up
between them.

Then, glibc keeps memory freed by other threads in per-thread arenas instead of
returning it: after a few hundred calls (codec, resampler and inference
buffers of every size, allocated by aiortc's, PyAV's and the engines' threads)
the soak saw RSS about 25 % above its baseline with no live object behind it.
``malloc_trim(0)`` returns those pages. :class:`HeapTrimmer` runs it in a
worker thread (it takes 5–80 ms) after a call ends, at most once every
:data:`MIN_INTERVAL_SECONDS`. Elsewhere (musl, macOS) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time
from collections.abc import Callable

from gateway.ops.observers import CallObserver

logger = logging.getLogger(__name__)

MIN_INTERVAL_SECONDS = 30.0


def libc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where there is none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


def freeze_long_lived() -> None:
    """Exempt every object alive now (the loaded models, the imported modules) from garbage collection."""
    gc.collect()
    gc.freeze()
    logger.debug("%d long-lived objects frozen", gc.get_freeze_count())


class HeapTrimmer(CallObserver):
    """After a call ends, returns freed heap memory to the OS (rate-limited, off the event loop).

    A call that ends within the interval after a trim gets a trim at the end of the interval, so
    the last call of a busy period is trimmed after too.
    """

    def __init__(self, *, min_interval: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._trim = libc_malloc_trim()
        self._min_interval = min_interval
        self._clock = clock
        self._last = float("-inf")
        self._running: asyncio.Future[int] | None = None
        self._later: asyncio.TimerHandle | None = None
        self.trims = 0

    def call_ended(self, call_id: str, reason: str, duration_s: float, turns: int) -> None:
        self.trim_soon()

    def trim_soon(self) -> None:
        if self._trim is None:
            return
        interval = MIN_INTERVAL_SECONDS if self._min_interval is None else self._min_interval
        loop = asyncio.get_running_loop()
        wait = self._last + interval - self._clock()
        if wait > 0 or (self._running is not None and not self._running.done()):
            if self._later is None:
                self._later = loop.call_later(max(wait, 1.0), self._trim_later)
            return
        self._last = self._clock()
        self.trims += 1
        if gc.get_freeze_count():  # only cheap once the models are frozen (else CPython's own schedule)
            started = time.perf_counter()
            collected = gc.collect()  # the garbage cycles of ended calls
            logger.debug("heap: %d garbage objects collected in %.1f ms", collected,
                         (time.perf_counter() - started) * 1e3)
        self._running = loop.run_in_executor(None, self._trim, 0)

    def _trim_later(self) -> None:
        self._later = None
        self.trim_soon()
