"""Smart Turn v3: has the caller finished their turn? (semantic end of turn)

The model (BSD-2-Clause, by Daily) is a Whisper-tiny encoder with a small classifier head, trained
on the prosody and wording of speech that ends a turn versus speech that pauses inside one. It
ships inside the ``pipecat-ai`` wheel (``pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx``,
8.7 MB); the gateway installs that wheel ``--no-deps`` (its 25 dependencies — numba, pydantic,
openai … — are for pipecat's pipelines, not for one ONNX file) and imports no pipecat code.

Input: Whisper-style log-mel features (80 mel bands × 800 frames of 10 ms) of the *last* 8 s of
the turn at 16 kHz, zero-padded at the start when the turn is shorter; output: P(turn complete).
The feature extraction below follows the model's training recipe (transformers'
``WhisperFeatureExtractor`` with ``chunk_length=8`` and waveform normalisation), written with
numpy's batched rFFT: about 4 ms for 8 s of audio, and the model about 25 ms on one core of
this machine (measured, :mod:`benchmarks.turn_taking`). It runs in its own inference worker,
once per pause.
"""

from __future__ import annotations

import importlib.metadata
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime
from numpy.lib.stride_tricks import sliding_window_view

from engines.base import SAMPLE_RATE, EndOfTurn, EndOfTurnModel, FloatArray
from engines.errors import EngineLoadError
from engines.worker import PRIORITY_HIGH, InferenceWorker

WINDOW_SECONDS = 8
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 80
FRAMES = WINDOW_SECONDS * SAMPLE_RATE // HOP  # 800
MODEL_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"


def packaged_model_path() -> Path:
    """The ONNX file inside the installed ``pipecat-ai`` wheel (no pipecat module is imported)."""
    try:
        distribution = importlib.metadata.distribution("pipecat-ai")
    except importlib.metadata.PackageNotFoundError as exc:
        raise EngineLoadError("end_of_turn", "pipecat-ai is not installed (pip install --no-deps pipecat-ai)") from exc
    # Located through the wheel's metadata: importing pipecat would import its dependencies (loguru …).
    return Path(str(distribution.locate_file(MODEL_FILE)))


def _hz_to_mel(freq: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    linear = 3.0 * freq / 200.0
    log = 15.0 + np.log(np.maximum(freq, 1e-9) / 1000.0) * (27.0 / np.log(6.4))
    return np.where(freq >= 1000.0, log, linear)


def _mel_to_hz(mels: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    linear = 200.0 * mels / 3.0
    log = 1000.0 * np.exp(np.log(6.4) / 27.0 * (mels - 15.0))
    return np.where(mels >= 15.0, log, linear)


def mel_filterbank() -> npt.NDArray[np.float64]:
    """Triangular, area-normalised (Slaney) filters, shape ``(N_MELS, N_FFT // 2 + 1)``."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array(0.0)), _hz_to_mel(np.array(SAMPLE_RATE / 2)), N_MELS + 2))
    bins = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    slopes = edges[np.newaxis, :] - bins[:, np.newaxis]
    widths = np.diff(edges)
    down = -slopes[:, :-2] / widths[:-1]
    up = slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up)) * (2.0 / (edges[2:] - edges[:-2]))
    return np.asarray(filters.T)


_FILTERS = mel_filterbank()
_HANN = np.hanning(N_FFT + 1)[:-1]  # periodic, as torch.hann_window


def log_mel_features(audio: FloatArray) -> FloatArray:
    """The model's input for ``audio``: its last 8 s (zero-padded in front), shape ``(80, 800)``."""
    samples = WINDOW_SECONDS * SAMPLE_RATE
    x = np.asarray(audio, np.float32)[-samples:]
    if len(x) < samples:
        x = np.concatenate([np.zeros(samples - len(x), np.float32), x])
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")
    frames = sliding_window_view(padded, N_FFT)[::HOP]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=-1)) ** 2
    log_spec = np.log10(np.maximum(1e-10, _FILTERS @ power.T))[:, :FRAMES]
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    features: FloatArray = ((log_spec + 4.0) / 4.0).astype(np.float32)
    return features


class SmartTurn(EndOfTurnModel):
    """Smart Turn v3.2 on onnxruntime (CPU), shared by every call; one judgement per pause."""

    def __init__(self, model_path: Path | None = None, *, worker: InferenceWorker | None = None,
                 threads: int = 1) -> None:
        path = model_path or packaged_model_path()
        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        options.intra_op_num_threads = threads
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = onnxruntime.InferenceSession(str(path), sess_options=options,
                                                         providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises several unrelated types
            raise EngineLoadError("end_of_turn", f"cannot load {path}: {exc}") from exc
        self._worker = worker or InferenceWorker("end-of-turn", threads=1, max_pending=256)
        self._owns_worker = worker is None

    async def predict(self, audio: FloatArray) -> EndOfTurn:
        if audio.ndim != 1:
            raise ValueError("predict() takes 1-D 16 kHz audio")
        return await self._worker.run(lambda: self.predict_blocking(audio), priority=PRIORITY_HIGH)

    def predict_blocking(self, audio: FloatArray) -> EndOfTurn:
        started = time.perf_counter()
        features = log_mel_features(audio)[np.newaxis]
        (output,) = self._session.run(None, {"input_features": features})
        return EndOfTurn(float(np.asarray(output).reshape(-1)[0]), time.perf_counter() - started)

    @property
    def queue_depth(self) -> int:
        return self._worker.queue_depth

    def close(self) -> None:
        if self._owns_worker:
            self._worker.close()
