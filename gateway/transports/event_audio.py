"""Audio as the Realtime WebSocket carries it: base64 in events, in the session's GA formats.

In: ``input_audio_buffer.append`` bytes in ``audio.input.format`` → 16 kHz mono float32 for the
session — ``audio/pcm`` (24 kHz PCM16 little-endian) through av's resampler, ``audio/pcmu`` /
``audio/pcma`` through :mod:`media.g711`. Out: the gateway's voice at the wire rate (from
:class:`~gateway.transports.socket_audio.SocketAudio`) → the bytes of ``response.output_audio.delta``
in ``audio.output.format``. Each direction keeps its resampler state between chunks, and starts
afresh when the caller changes the format.
"""

from __future__ import annotations

import numpy as np

from engines.base import FloatArray
from gateway.protocol.session_settings import PCM_24K, AudioFormat
from media.g711 import G711Decoder, G711Encoder
from media.pcm import Int16Array, PcmConverter

INPUT_RATE = 16_000


class _PcmDecoder:
    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._converter = PcmConverter(INPUT_RATE)

    def decode(self, data: bytes) -> FloatArray:
        samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
        return self._converter.convert_array(samples, self._rate)  # type: ignore[return-value]


class EventAudioCodec:
    """One call's :class:`~gateway.session.transport.EventAudio`, and its output encoder."""

    def __init__(self) -> None:
        self.input_format = PCM_24K
        self.output_format = PCM_24K
        self._decoder: _PcmDecoder | G711Decoder = _PcmDecoder(PCM_24K.rate)
        self._encoder: G711Encoder | None = None

    def set_formats(self, input_format: AudioFormat, output_format: AudioFormat) -> None:
        if input_format != self.input_format:
            self.input_format = input_format
            self._decoder = _decoder(input_format)
        if output_format != self.output_format:
            self.output_format = output_format
            self._encoder = _encoder(output_format)

    def decode(self, data: bytes) -> FloatArray:
        if len(data) % self.input_format.sample_bytes:
            raise ValueError(f"{self.input_format.type} audio must be whole 16-bit samples")
        return self._decoder.decode(data)

    @property
    def output_rate(self) -> int:
        return self.output_format.rate

    def encode(self, samples: Int16Array) -> bytes:
        """``samples`` (at :attr:`output_rate`) as the bytes of a delta in the output format."""
        if self._encoder is None:
            return np.ascontiguousarray(samples, dtype="<i2").tobytes()
        return self._encoder.encode_8k(samples)


def _decoder(fmt: AudioFormat) -> _PcmDecoder | G711Decoder:
    if fmt.type == "audio/pcm":
        return _PcmDecoder(fmt.rate)
    return G711Decoder("pcmu" if fmt.type == "audio/pcmu" else "pcma", rate=INPUT_RATE)


def _encoder(fmt: AudioFormat) -> G711Encoder | None:
    if fmt.type == "audio/pcm":
        return None
    return G711Encoder("pcmu" if fmt.type == "audio/pcmu" else "pcma", rate=fmt.rate)
