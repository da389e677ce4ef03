"""Speech for the QA tools: audio files (any format av reads) and manifests of them."""

from __future__ import annotations

import csv
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from media.pcm import read_audio_file

CLIP_RATE = 48_000
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".webm")
MANIFEST = "manifest.tsv"


@dataclass(frozen=True)
class Clip:
    """One utterance: mono float32 samples, and what is said in it when known."""

    name: str
    samples: npt.NDArray[np.float32]
    rate: int = CLIP_RATE
    transcript: str | None = None

    def __post_init__(self) -> None:
        if self.samples.ndim != 1 or not len(self.samples):
            raise ValueError(f"{self.name}: no audio")

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def load_clip(path: str | Path, transcript: str | None = None) -> Clip:
    """Decode ``path`` (any format and rate) to a mono clip; ValueError if it has no audio."""
    try:
        samples = read_audio_file(path, CLIP_RATE)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    return Clip(Path(path).name, samples, CLIP_RATE, transcript)


def known_transcript(path: str | Path) -> str | None:
    """What is said in ``path``, if a ``manifest.tsv`` beside it lists the file."""
    manifest = Path(path).parent / MANIFEST
    if not manifest.is_file():
        return None
    try:
        entries = _manifest(manifest)
    except (OSError, ValueError):
        return None
    name = Path(path).resolve()
    return next((t for p, t in entries if p.resolve() == name), None)


def write_wav(path: str | Path, pcm: npt.NDArray[np.int16], rate: int) -> None:
    """Write mono int16 samples as a WAV file."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.ascontiguousarray(pcm, dtype="<i2").tobytes())


def load_speech(source: str | Path, *, max_seconds: float = 12.0) -> list[Clip]:
    """The clips of a manifest (TSV with ``file`` and ``transcript`` columns), a directory or a file.

    A directory is read through its ``manifest.tsv`` when it has one, else every
    audio file in it is used (without transcripts). Clips longer than
    ``max_seconds`` are left out.
    """
    path = Path(source)
    if path.is_dir() and (path / MANIFEST).is_file():
        path = path / MANIFEST
    if path.is_dir():
        entries: list[tuple[Path, str | None]] = [
            (p, None) for p in sorted(path.iterdir()) if p.suffix.lower() in AUDIO_SUFFIXES]
    elif path.suffix.lower() in (".tsv", ".csv"):
        entries = _manifest(path)
    elif path.is_file():
        entries = [(path, None)]
    else:
        raise ValueError(f"{source}: no such file or directory")
    clips = [clip for clip in (load_clip(p, t) for p, t in entries) if clip.seconds <= max_seconds]
    if not clips:
        raise ValueError(f"{source}: no audio clips of at most {max_seconds:g} s")
    return clips


def _manifest(path: Path) -> list[tuple[Path, str | None]]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    if not rows or "file" not in rows[0]:
        raise ValueError(f"{path}: a manifest needs a 'file' column")
    return [(path.parent / row["file"], row.get("transcript") or None) for row in rows]
