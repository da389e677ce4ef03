"""Silero VAD (ONNX) with one shared session and per-call recurrent state."""

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


def packaged_model_path() -> Path:
    """The ONNX model shipped inside the ``silero-vad`` package."""
    return Path(str(importlib.resources.files("silero_vad.data").joinpath("silero_vad.onnx")))


class SileroVad(VoiceActivityDetector):
    def __init__(self, model_path: Path | None = None, *, worker: InferenceWorker | None = None) -> None:
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

    def stream(self) -> SileroVadStream:
        return SileroVadStream(self)

    def close(self) -> None:
        if self._owns_worker:
            self._worker.close()

    def _infer(
        self, windows: FloatArray, state: FloatArray, context: FloatArray
    ) -> tuple[list[float], FloatArray, FloatArray]:
        probabilities: list[float] = []
        sr = np.array(SAMPLE_RATE, dtype=np.int64)
        for window in windows:
            x = np.concatenate([context, window])[np.newaxis, :]
            out, state = self._session.run(None, {"input": x, "state": state, "sr": sr})
            probabilities.append(float(out[0][0]))
            context = window[-CONTEXT_SAMPLES:]
        return probabilities, state, context


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
        state, context = self._state, self._context
        probabilities, self._state, self._context = await self._model._worker.run(
            lambda: self._model._infer(windows.astype(np.float32, copy=False), state, context),
            priority=PRIORITY_HIGH,
        )
        return probabilities
