"""Real speech from ../shared/speech and transcript scoring."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media.pcm import read_audio_file
from qa.measure import normalize, word_error_rate

__all__ = ["SPEECH_DIR", "Utterance", "manifest", "normalize", "utterance", "word_error_rate"]

REPO = Path(__file__).resolve().parents[2]
SPEECH_DIR = Path(os.environ.get("VOICE_GATEWAY_SPEECH_DIR", REPO.parent / "shared" / "speech"))

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
