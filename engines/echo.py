"""Acoustic echo cancellation for callers without it: the gateway removes its own voice.

A phone line, a speakerphone or a native app without echo cancellation sends the gateway's
reply back in the caller's microphone; to the VAD that is speech, and the gateway interrupts
itself. The gateway knows every sample it sent (the reference), so it can subtract it:

1. **Delay**: the echo is the reference delayed by the round trip and the room (tens to hundreds
   of ms). GCC-PHAT (phase-only cross-correlation, one FFT per estimate) over the last second
   finds it; a weak peak means there is no echo path (the caller cancels echo itself) and the
   microphone passes untouched.
2. **Echo path**: a 128-tap FIR (8 ms at 16 kHz: a loudspeaker and a room's early reflections)
   around that delay, solved by least squares from FFT auto/cross-correlations (Wiener–Hopf,
   a 128×128 solve), so it is right from its first estimate instead of converging over
   seconds as an NLMS filter does. It is re-estimated after each 400 ms of reply speech, and
   replaces the one in use only when it leaves a fifth less of the microphone (the caller
   talking over the reply biases an estimate only slightly, and the bias never wins that).
3. **Residual**: what remains where the estimated echo dominates (residual 13 dB or more below
   it) is attenuated 20 dB, so a residual echo cannot reach the VAD's threshold; the caller
   talking over the echo is far above that and passes.

Until the filter removes 10 dB of the microphone over its window (from the first estimate, after
400 ms of the first reply's speech, or a later one), the microphone is muted while the reference
plays: a barge-in in the first ~0.5 s of a call's first reply is heard that much later. Everything
is vectorised numpy (about 1 ms per 20 ms frame, estimates 5 ms), run in the echo worker.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from engines.base import SAMPLE_RATE, FloatArray
from engines.worker import PRIORITY_HIGH, InferenceWorker

TAPS = 128
LEAD = 16  # taps before the estimated delay (the estimate is within a few samples)
MAX_DELAY = int(0.5 * SAMPLE_RATE)  # round trip + room: the lags searched
HISTORY = SAMPLE_RATE  # the window an estimate is made over
ESTIMATE_EVERY = SAMPLE_RATE // 4
MIN_ACTIVE = int(0.4 * SAMPLE_RATE)  # reference audio needed before the first estimate
NO_ECHO_AFTER = int(0.8 * SAMPLE_RATE)  # reply speech heard without an echo: the microphone is echo-free
ACTIVE_RMS = 0.01  # reference louder than this (-40 dBFS) is speech that excites the echo path enough to fit it
REPLACE_RATIO = 0.8
CONVERGED_ERLE = 10.0  # held-out echo energy / residual energy from which the filter is trusted (10 dB)
PEAK_FOR_ECHO = 0.08  # GCC-PHAT peak (normalised) above which there is an echo path
RESIDUAL_RATIO = 0.05  # residual energy below this share of the echo estimate's is residual echo
RESIDUAL_GAIN = 0.1


def gcc_phat_delay(mic: FloatArray, ref: FloatArray, max_delay: int) -> tuple[int, float]:
    """How far (samples, 0..max_delay) ``mic`` trails the reference, and the normalised peak height.

    ``ref`` covers ``mic``'s span and the ``max_delay`` samples before it (``ref[max_delay + i]`` was sent
    while ``mic[i]`` was captured)."""
    n = 1 << int(np.ceil(np.log2(len(mic) + len(ref))))
    cross = np.fft.rfft(ref, n) * np.conj(np.fft.rfft(mic, n))
    cross /= np.abs(cross) + 1e-12
    correlation = np.fft.irfft(cross, n)[: max_delay + 1]  # c[t] = sum ref[i + t] mic[i]: peak at max_delay - delay
    lag = int(np.argmax(correlation))
    return max_delay - lag, float(correlation[lag])


def _lagged(ref: FloatArray, start: int, length: int) -> npt.NDArray[np.float64]:
    """``X[i, k] = ref[start + i - k]``: the reference at each tap, for ``length`` outputs."""
    windows = np.lib.stride_tricks.sliding_window_view(ref[start - TAPS + 1 : start + length], TAPS)
    return np.asarray(windows[:, ::-1], np.float64)


def filtered(segment: FloatArray, h: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``segment`` (``TAPS - 1`` samples of history first) through the FIR ``h``, by FFT: one output per new sample."""
    n = 1 << int(np.ceil(np.log2(len(segment) + TAPS)))
    out = np.fft.irfft(np.fft.rfft(segment, n) * np.fft.rfft(h, n), n)
    return np.asarray(out[TAPS - 1 : len(segment)], np.float64)


def solve_echo_path(mic: FloatArray, ref: FloatArray) -> npt.NDArray[np.float64]:
    """The FIR ``h`` minimising ``|mic - ref * h|`` (``ref`` holds ``TAPS - 1`` samples before ``mic``'s first)."""
    n = 1 << int(np.ceil(np.log2(len(ref) + TAPS)))
    spectrum = np.fft.rfft(ref, n)
    auto = np.fft.irfft(spectrum * np.conj(spectrum), n)[:TAPS]
    cross = np.fft.irfft(np.fft.rfft(np.concatenate([np.zeros(TAPS - 1), mic]), n) * np.conj(spectrum), n)[:TAPS]
    lags = np.abs(np.arange(TAPS)[:, np.newaxis] - np.arange(TAPS)[np.newaxis, :])
    normal = auto[lags] + np.eye(TAPS) * (1e-3 * auto[0] + 1e-9)
    return np.asarray(np.linalg.solve(normal, cross), np.float64)


class EchoCanceller:
    """One call's echo canceller: feed each microphone chunk with the reference sent over the same span."""

    def __init__(self) -> None:
        self._mic = np.zeros(0, np.float32)  # the last HISTORY samples of microphone
        # the reference: MAX_DELAY + TAPS more than the microphone (silence before the call: nothing was sent)
        self._ref = np.zeros(MAX_DELAY + TAPS, np.float32)
        self._active = 0  # reference samples played (loud) since the last estimate
        self._played = 0  # reference samples played (loud) in all
        self._since_estimate = 0
        self.delay: int | None = None  # samples; None: not estimated yet
        self.echo_present = False
        self.converged = False  # the filter removed CONVERGED_ERLE of echo it was not fitted on
        self._h = np.zeros(TAPS, np.float64)
        self.estimates = 0

    @property
    def estimated(self) -> bool:
        return self.delay is not None

    def process(self, mic: FloatArray, ref: FloatArray) -> FloatArray:
        """``mic`` without the gateway's voice; ``ref`` is what was sent while ``mic`` was captured (same length)."""
        if len(mic) != len(ref):
            raise ValueError("mic and ref must be the same length")
        keep = HISTORY + MAX_DELAY + TAPS
        self._ref = np.concatenate([self._ref, ref.astype(np.float32)])[-keep:]
        self._mic = np.concatenate([self._mic, mic.astype(np.float32)])[-HISTORY:]
        playing = float(np.sqrt(np.mean(ref.astype(np.float64) ** 2))) > ACTIVE_RMS
        self._active += len(ref) if playing else 0
        self._played += len(ref) if playing else 0
        self._since_estimate += len(mic)
        if self._active >= MIN_ACTIVE and (self.delay is None or self._since_estimate >= ESTIMATE_EVERY):
            self._estimate()
        if self.delay is not None and not self.echo_present:
            return mic.astype(np.float32)
        if self.delay is None or not self.converged:
            recent_ref = self._ref[-(MAX_DELAY + len(mic)) :]
            echo_possible = float(np.abs(recent_ref).max(initial=0.0)) > ACTIVE_RMS
            if echo_possible:
                return np.zeros_like(mic)
            return mic.astype(np.float32) if self.delay is None else self._cancel(mic)
        return self._cancel(mic)

    def _cancel(self, mic: FloatArray) -> FloatArray:
        assert self.delay is not None
        n = len(mic)
        start = len(self._ref) - n - self.delay + LEAD
        if start - TAPS + 1 < 0:
            return mic.astype(np.float32)
        echo = _lagged(self._ref, start, n) @ self._h
        residual = mic.astype(np.float64) - echo
        if np.sum(residual**2) < RESIDUAL_RATIO * np.sum(echo**2):
            residual *= RESIDUAL_GAIN
        return residual.astype(np.float32)

    def _estimate(self) -> None:
        active, self._active = self._active, 0
        self._since_estimate = 0
        length = len(self._mic)
        ref_span = self._ref[-(length + MAX_DELAY) :]
        if length < MIN_ACTIVE or active < min(length, ESTIMATE_EVERY) // 2:
            return
        delay, peak = gcc_phat_delay(self._mic, ref_span, MAX_DELAY)
        present = peak >= PEAK_FOR_ECHO
        self.estimates += 1
        if not present:
            if self.delay is None and self._played >= NO_ECHO_AFTER:  # sure enough: the caller cancels echo itself
                self.delay, self.echo_present = delay, False
            return
        start = len(self._ref) - length - delay + LEAD
        if start - TAPS + 1 < 0:
            return
        # 128 taps fitted on 16 000 samples do not overfit; double talk biases an estimate a little, and a
        # filter is only replaced by one that removes a fifth more of the microphone's energy.
        segment = self._ref[start - TAPS + 1 : start + length]
        h = solve_echo_path(self._mic, segment)
        mic = self._mic.astype(np.float64)
        new_error = float(np.sum((mic - filtered(segment, h)) ** 2))
        same_path = self.echo_present and self.delay == delay
        old_error = float(np.sum((mic - filtered(segment, self._h)) ** 2)) if same_path else float(np.sum(mic**2))
        if new_error < REPLACE_RATIO * old_error:
            self._h, self.delay, self.echo_present = h, delay, True
            self.converged = self.converged or float(np.sum(mic**2)) >= CONVERGED_ERLE * new_error


class EchoCancellers:
    """Echo cancellers for every call, run in one inference worker (started with the first call that asks)."""

    def __init__(self, worker: InferenceWorker | None = None) -> None:
        self._worker = worker
        self._owns_worker = worker is None

    def stream(self) -> EchoStream:
        if self._worker is None:
            self._worker = InferenceWorker("echo", threads=1, max_pending=1024)
        return EchoStream(EchoCanceller(), self._worker)

    def close(self) -> None:
        if self._owns_worker and self._worker is not None:
            self._worker.close()


class EchoStream:
    """One call's canceller behind the worker: chunks are processed in order, off the event loop."""

    def __init__(self, canceller: EchoCanceller, worker: InferenceWorker) -> None:
        self.canceller = canceller
        self._worker = worker

    async def process(self, mic: FloatArray, ref: FloatArray) -> FloatArray:
        return await self._worker.run(lambda: self.canceller.process(mic, ref), priority=PRIORITY_HIGH)
