"""The official Riva client classes (blocking) pointed at a test gateway, and the clips as raw PCM."""

from __future__ import annotations

import numpy as np
import riva.client

from tests.speech.conftest import API_KEY
from tests.support.speech import Utterance


def auth(uri: str, key: str | None = API_KEY, **kwargs: object) -> riva.client.Auth:
    metadata = [["authorization", f"Bearer {key}"]] if key is not None else None
    return riva.client.Auth(uri=uri, metadata_args=metadata, **kwargs)  # type: ignore[arg-type]


def pcm16(clip: Utterance, rate: int = 16_000) -> bytes:
    samples = np.clip(clip.audio(rate) * 32767, -32768, 32767).astype("<i2")
    return samples.tobytes()


def chunks(data: bytes, *, seconds: float = 0.1, rate: int = 16_000) -> list[bytes]:
    size = int(seconds * rate) * 2
    return [data[i : i + size] for i in range(0, len(data), size)]


def recognition_config(rate: int = 16_000, **kwargs: object) -> riva.client.RecognitionConfig:
    fields: dict[str, object] = {"language_code": "en-US", "max_alternatives": 1, **kwargs}
    return riva.client.RecognitionConfig(encoding=riva.client.AudioEncoding.LINEAR_PCM, sample_rate_hertz=rate,
                                         **fields)  # type: ignore[arg-type]
