"""PCM conversion with av's resampler (libswresample), never numpy interpolation."""

from __future__ import annotations

import fractions
from pathlib import Path
from typing import TypeVar

import av
import numpy as np
import numpy.typing as npt
from av.audio.frame import AudioFrame

T = TypeVar("T", bound=np.generic)
FloatArray = npt.NDArray[np.float32]
Int16Array = npt.NDArray[np.int16]


class PcmConverter:
    """Converts audio frames of any format/rate/layout to mono PCM at one rate.

    The resampler keeps filter state between frames, so use one converter per
    stream and feed it frames in order.
    """

    def __init__(self, rate: int, *, sample_format: str = "flt") -> None:
        if sample_format not in ("flt", "s16"):
            raise ValueError("sample_format must be 'flt' or 's16'")
        self.rate = rate
        self._format = sample_format
        self._resampler = av.AudioResampler(format=sample_format, layout="mono", rate=rate)

    def convert(self, frame: AudioFrame | None) -> npt.NDArray[np.float32] | npt.NDArray[np.int16]:
        """Resample one frame (``None`` flushes the filter); returns mono samples."""
        out = self._resampler.resample(frame)
        if self._format == "s16":
            return _joined(out, np.int16)
        return _joined(out, np.float32)

    def convert_array(self, samples: FloatArray, rate: int) -> npt.NDArray[np.float32] | npt.NDArray[np.int16]:
        """Resample mono float32 samples at ``rate``."""
        return self.convert(float_frame(samples, rate))


def _joined(frames: list[AudioFrame], dtype: type[T]) -> npt.NDArray[T]:
    if not frames:
        return np.zeros(0, dtype)
    return np.concatenate([f.to_ndarray().reshape(-1) for f in frames]).astype(dtype, copy=False)


def float_frame(samples: FloatArray, rate: int) -> AudioFrame:
    """A mono float32 av frame holding ``samples``."""
    data = np.ascontiguousarray(samples, dtype=np.float32).reshape(1, -1)
    frame = AudioFrame.from_ndarray(data, format="flt", layout="mono")
    frame.sample_rate = rate
    return frame


def int16_frame(samples: Int16Array, rate: int, pts: int) -> AudioFrame:
    """A mono s16 av frame holding ``samples``, stamped ``pts`` (in samples at ``rate``)."""
    frame = AudioFrame.from_ndarray(np.ascontiguousarray(samples).reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    frame.pts = pts
    frame.time_base = fractions.Fraction(1, rate)
    return frame


def read_audio_file(path: str | Path, rate: int = 16_000) -> FloatArray:
    """Decode any file av can read to mono float32 at ``rate``."""
    converter = PcmConverter(rate)
    chunks: list[FloatArray] = []
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path}: no audio stream")
        for frame in container.decode(audio=0):
            chunks.append(converter.convert(frame).astype(np.float32, copy=False))
    chunks.append(converter.convert(None).astype(np.float32, copy=False))
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def trim_leading_silence(samples: Int16Array, rate: int, *, threshold: int = 32, keep_ms: int = 5) -> Int16Array:
    """``samples`` without the near-digital silence (|x| < ``threshold``, about -60 dBFS) they start with.

    ``keep_ms`` of it stays, so the first sound is not cut. All-silent input comes back unchanged.
    """
    loud = np.flatnonzero(np.abs(samples) >= threshold)
    if not len(loud):
        return samples
    return samples[max(0, int(loud[0]) - rate * keep_ms // 1000):]
