"""Silero VAD (ONNX) with one shared session and per-call recurrent state.

Every call runs the model on each 32 ms window, so with many calls the VAD worker sees
many tiny jobs. When several calls' windows are queued at once (the worker was busy, as
under load), they run as one batched ``session.run``: silero takes a batch with one
state row per call. Measured per window (benchmarks/vad_batching.py): 149 µs alone,
77 µs in a batch of 4, 60 µs in a batch of 12, with the same probabilities as one by one.
A lone window is not held back to wait for company: batches form only from what is queued.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
import onnxruntime

from engines.base import SAMPLE_RATE, FloatArray, VadStream, VoiceActivityDetector
from engines.errors import EngineLoadError
from engines.worker import PRIORITY_HIGH, InferenceWorker

WINDOW_SAMPLES = 512  # 32 ms at 16 kHz, the window silero-vad is trained on
CONTEXT_SAMPLES = 64
MAX_BATCH = 32  # calls whose windows run in one session.run at most

#: One call's job: its windows, recurrent state and context; the result: probabilities, new state and context.
Job = tuple[FloatArray, FloatArray, FloatArray]
Result = tuple[list[float], FloatArray, FloatArray]


def packaged_model_path() -> Path:
    """The ONNX model shipped inside the ``silero-vad`` package."""
    return Path(str(importlib.resources.files("silero_vad.data").joinpath("silero_vad.onnx")))


class SileroVad(VoiceActivityDetector):
    """``batching``: queued windows of several calls run as one batch (False: each call's alone, as before)."""

    def __init__(self, model_path: Path | None = None, *, worker: InferenceWorker | None = None,
                 batching: bool = True) -> None:
        path = model_path or packaged_model_path()
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise EngineLoadError("vad", f"cannot load {path}: {exc}") from exc
        self._worker = worker or InferenceWorker("vad", threads=1, max_pending=4096)
        self._owns_worker = worker is None
        self._batching = batching
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)
        #: Windows run, and the session.run calls they took (their ratio is the mean batch).
        self.windows_run = self.model_runs = 0

    def stream(self) -> SileroVadStream:
        return SileroVadStream(self)

    def close(self) -> None:
        if self._owns_worker:
            self._worker.close()

    async def _run(self, job: Job) -> Result:
        if self._batching:
            return await self._worker.run_batched(job, self._infer_batch, key="vad", priority=PRIORITY_HIGH,
                                                  min_batch=2, max_batch=MAX_BATCH)
        return await self._worker.run(lambda: self._infer(*job), priority=PRIORITY_HIGH)

    def _infer(self, windows: FloatArray, state: FloatArray, context: FloatArray) -> Result:
        return self._infer_batch([(windows, state, context)])[0]

    def _infer_batch(self, jobs: list[Job]) -> list[Result]:
        """Each job's windows in order; step ``t`` runs the ``t``-th window of every job that has one, together."""
        probabilities: list[list[float]] = [[] for _ in jobs]
        states = [state for _, state, _ in jobs]
        contexts = [context for _, _, context in jobs]
        for step in range(max(len(windows) for windows, _, _ in jobs)):
            rows = [i for i, (windows, _, _) in enumerate(jobs) if step < len(windows)]
            x = np.stack([np.concatenate([contexts[i], jobs[i][0][step]]) for i in rows])
            state = np.ascontiguousarray(np.concatenate([states[i] for i in rows], axis=1))
            out, state = self._session.run(None, {"input": x, "state": state, "sr": self._sr})
            self.model_runs += 1
            self.windows_run += len(rows)
            for row, i in enumerate(rows):
                probabilities[i].append(float(out[row][0]))
                states[i] = state[:, row: row + 1, :]
                contexts[i] = jobs[i][0][step][-CONTEXT_SAMPLES:]
        return list(zip(probabilities, states, contexts, strict=True))


class SileroVadStream(VadStream):
    window_samples = WINDOW_SAMPLES

    def __init__(self, model: SileroVad) -> None:
        self._model = model
        self.reset()

    def reset(self) -> None:
        self._state: FloatArray = np.zeros((2, 1, 128), np.float32)
        self._context: FloatArray = np.zeros(CONTEXT_SAMPLES, np.float32)

    async def probabilities(self, windows: FloatArray) -> list[float]:
        if windows.ndim != 2 or windows.shape[1] != WINDOW_SAMPLES:
            raise ValueError(f"windows must have shape (n, {WINDOW_SAMPLES})")
        if not len(windows):
            return []
        probabilities, self._state, self._context = await self._model._run(
            (windows.astype(np.float32, copy=False), self._state, self._context))
        return probabilities
