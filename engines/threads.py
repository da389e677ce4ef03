"""Native thread pools the engines would otherwise let spin.

numpy's OpenBLAS (used by Whisper's feature extraction) starts one thread per
core and keeps them busy-waiting after every matrix product. On a machine whose
cores are shared by many calls that spinning is pure waste: a Whisper tiny.en
decode of a clip of at most 4 s took 103 ms of CPU (median) with it and 63 ms
without, and was no slower (benchmarks/engine_cpu.py, docs/benchmarks.md). The
matrices involved are small, so one BLAS thread loses nothing.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def limit_blas_threads(threads: int = 1) -> None:
    """Give numpy's BLAS ``threads`` threads for the rest of the process."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")
    logger.debug("BLAS limited to %d thread(s)", threads)
