"""Sounds that are not words, for testing false interruptions: voiced coughs, clicks, a door (16 kHz).

silero-vad hears the voiced coughs as speech (a glottal buzz and breath noise through three formants),
so over a reply they pause it, and the interruption judge must let it resume; the clicks and the door
it does not hear (benchmarks/turn_taking.py, tests/voice/test_short_interruptions.py).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Audio = npt.NDArray[np.float32]
RATE = 16_000


def resonator(x: npt.NDArray[np.float64], freq: float, bandwidth: float) -> npt.NDArray[np.float64]:
    """A two-pole resonance (a formant), as its impulse response convolved (vectorised)."""
    r = np.exp(-np.pi * bandwidth / RATE)
    n = np.arange(int(0.03 * RATE))
    impulse = r**n * np.sin(2 * np.pi * freq / RATE * (n + 1)) / np.sin(2 * np.pi * freq / RATE)
    return np.convolve(x, impulse)[: len(x)]


def cough(seed: int, f0: float, voiced: float, seconds: float) -> Audio:
    """A voiced cough: a glottal buzz and breath noise through three formants, with a fast decay."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    pulses = np.zeros(n)
    pulses[:: max(1, int(RATE / f0))] = 1.0
    source = (1 - voiced) * rng.normal(0, 1, n) + voiced * 3 * np.convolve(pulses, np.exp(-np.arange(60) / 10))[:n]
    shaped = resonator(source, 600, 200) + 0.6 * resonator(source, 1500, 300) + 0.3 * resonator(source, 2800, 400)
    shaped *= np.minimum(1, t / 0.008) * np.exp(-t / 0.09)
    out: Audio = (0.6 * shaped / np.abs(shaped).max()).astype(np.float32)
    return out


def noises() -> dict[str, Audio]:
    """Four voiced coughs, a double cough, a double click and a door's thud."""
    rng = np.random.default_rng(3)
    click = np.zeros(int(0.3 * RATE))
    for at in (0.05, 0.12):
        i = int(at * RATE)
        click[i : i + 40] = rng.normal(0, 0.8, 40) * np.exp(-np.arange(40) / 8)
    t = np.arange(int(0.6 * RATE)) / RATE
    door = np.sin(2 * np.pi * 70 * t) * np.exp(-t / 0.12) + 0.3 * rng.normal(0, 1, len(t)) * np.exp(-t / 0.05)
    sounds = {f"cough{i}": cough(i, f0, voiced, seconds)
              for i, (f0, voiced, seconds) in enumerate([(140, 0.6, 0.3), (200, 0.8, 0.35), (120, 0.4, 0.25),
                                                         (160, 0.9, 0.4)])}
    sounds["double-cough"] = np.concatenate([cough(7, 150, 0.7, 0.3), np.zeros(1600, np.float32),
                                             0.7 * cough(8, 150, 0.7, 0.25)])
    sounds["click"] = click.astype(np.float32)
    sounds["door"] = (0.7 * door / np.abs(door).max()).astype(np.float32)
    return sounds
