"""The checks of the partial-transcript keys of ``[engines]`` (in a module of its own so schema.py stays short)."""

from __future__ import annotations

from gateway.config.errors import require as _require


def check_partials(window_ms: int, min_window_ms: int) -> None:
    """``engines.asr_partial_window_ms`` and ``engines.asr_partial_min_window_ms`` (docs/benchmarks.md).

    A 6 s window is the shortest tiny.en decodes 5 s of audio in without repeating itself; below 2 s
    a partial window would cut most words.
    """
    _require(window_ms == 0 or window_ms >= 2000, "engines.asr_partial_window_ms",
             "must be 0 (the whole utterance) or >= 2000")
    _require(6000 <= min_window_ms <= 10_000, "engines.asr_partial_min_window_ms", "must be 6000..10000")
