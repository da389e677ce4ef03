"""Real speech from ../shared/speech and transcript scoring."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media.pcm import read_audio_file

REPO = Path(__file__).resolve().parents[2]
SPEECH_DIR = Path(os.environ.get("VOICE_GATEWAY_SPEECH_DIR", REPO.parent / "shared" / "speech"))

_NUMBERS = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven",
    "8": "eight", "9": "nine", "10": "ten", "13": "thirteen", "18": "eighteen", "1813": "eighteen thirteen",
}


@dataclass(frozen=True)
class Utterance:
    file: str
    duration: float
    transcript: str

    @property
    def path(self) -> Path:
        return SPEECH_DIR / self.file

    def audio(self, rate: int = 16_000) -> npt.NDArray[np.float32]:
        return _audio(str(self.path), rate)


@cache
def _audio(path: str, rate: int) -> npt.NDArray[np.float32]:
    return read_audio_file(path, rate)


@cache
def manifest() -> tuple[Utterance, ...]:
    with open(SPEECH_DIR / "manifest.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return tuple(Utterance(r["file"], float(r["duration_s"]), r["transcript"]) for r in rows)


def utterance(file: str) -> Utterance:
    for u in manifest():
        if u.file == file:
            return u
    raise KeyError(file)


def normalize(text: str) -> str:
    words = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()
    return " ".join(_NUMBERS.get(w, w) for w in words)


def word_error_rate(reference: str, hypothesis: str) -> float:
    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h))
        previous = current
    return previous[-1] / len(ref)
