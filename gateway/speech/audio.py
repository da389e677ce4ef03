"""Uploaded audio in (any container and codec av decodes), synthesised audio out (mp3, opus, aac, flac, wav, pcm).

Decoding is bounded before it is done: the container's declared duration is checked first, then the
decoded samples are counted as they come, so a file that lies about its length (a 10-hour header on a
few bytes, or the reverse) is stopped at ``max_seconds`` of audio, never decoded whole. Both run in a
thread (the callers use :func:`asyncio.to_thread`): av releases the GIL while it decodes.

Output is 24 kHz mono, the rate OpenAI's ``/v1/audio/speech`` produces (``pcm`` is documented as 24 kHz
signed 16-bit little-endian); :class:`AudioEncoder` turns each synthesised clause into the bytes of the
chosen format as soon as it is synthesised, so the response streams. WAV is written with the
"unknown length" sizes (0xFFFFFFFF) streaming WAV writers use; decoders read to the end of the data.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import av
import numpy as np

from engines.base import FloatArray

DECODE_RATE = 16_000
OUTPUT_RATE = 24_000

#: response_format → (av container format, codec, MIME type)
FORMATS: dict[str, tuple[str, str, str]] = {
    "mp3": ("mp3", "libmp3lame", "audio/mpeg"),
    "opus": ("ogg", "libopus", "audio/ogg"),
    "aac": ("adts", "aac", "audio/aac"),
    "flac": ("flac", "flac", "audio/flac"),
    "wav": ("", "", "audio/wav"),
    "pcm": ("", "", "audio/pcm"),
}


class AudioInputError(Exception):
    """An upload that is not audio, or too long; ``code`` is stable (``invalid_audio``, ``audio_too_long``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def decode_audio(data: bytes, *, max_seconds: float) -> FloatArray:
    """16 kHz mono float32 of the first audio stream of ``data`` (blocking: run it in a thread)."""
    try:
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise AudioInputError("invalid_audio", f"the file is not audio av can decode: {exc}") from None
    with container:
        if not container.streams.audio:
            raise AudioInputError("invalid_audio", "the file has no audio stream")
        stream = container.streams.audio[0]
        declared = _declared_seconds(container, stream)
        if declared is not None and declared > max_seconds:
            raise AudioInputError("audio_too_long", f"the audio is {declared:.0f} s long; at most {max_seconds:g} s")
        return _decode_bounded(container, stream, max_seconds)


def _declared_seconds(container: Any, stream: Any) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return float(container.duration) / 1_000_000
    return None


def _decode_bounded(container: Any, stream: Any, max_seconds: float) -> FloatArray:
    limit = int(max_seconds * DECODE_RATE)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=DECODE_RATE)
    pieces: list[FloatArray] = []
    total = 0
    try:
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                pieces.append(out.to_ndarray()[0].astype(np.float32, copy=False))
                total += out.samples
            if total > limit:
                raise AudioInputError("audio_too_long", f"the audio is longer than {max_seconds:g} s")
        for out in resampler.resample(None):
            pieces.append(out.to_ndarray()[0].astype(np.float32, copy=False))
    except (av.FFmpegError, ValueError, OSError) as exc:
        if not pieces:
            raise AudioInputError("invalid_audio", f"the audio cannot be decoded: {exc}") from None
        # a truncated file: what was decoded is transcribed, as ffmpeg would
    if not pieces:
        raise AudioInputError("invalid_audio", "the file holds no audio samples")
    return np.concatenate(pieces)[:limit]


class _Sink(io.RawIOBase):
    """What a muxer writes, taken out after each clause (not seekable: muxers write as they go)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


def wav_header(rate: int = OUTPUT_RATE) -> bytes:
    """A 16-bit mono WAV header whose sizes say "unknown" (0xFFFFFFFF): the length is not known when streaming."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + \
        struct.pack("<I", 0xFFFFFFFF)


class AudioEncoder:
    """Float PCM at ``input_rate`` in, the bytes of ``response_format`` at ``output_rate`` out, clause by clause.

    Blocking (encoding runs in a thread); one encoder per response, used by one thread at a time.
    """

    def __init__(self, response_format: str, input_rate: int, output_rate: int = OUTPUT_RATE) -> None:
        if response_format not in FORMATS:
            raise ValueError(f"unknown response_format {response_format!r}")
        self.format = response_format
        self.output_rate = output_rate
        self.mime_type = FORMATS[response_format][2]
        self._input_rate = input_rate
        self._header_sent = False
        container_format, codec, _ = FORMATS[response_format]
        self._container: Any = None
        if container_format:
            self._sink = _Sink()
            # flush_packets: write each packet out at once; page_duration (µs): Ogg pages of 100 ms, not 1 s
            options = {"flush_packets": "1", **({"page_duration": "100000"} if container_format == "ogg" else {})}
            self._container = av.open(self._sink, mode="w", format=container_format, options=options)
            self._stream = self._container.add_stream(codec, rate=output_rate, layout="mono")
            target = self._stream.codec_context.format.name
        else:
            target = "s16"
        self._resampler = av.AudioResampler(format=target, layout="mono", rate=output_rate)

    def encode(self, samples: FloatArray) -> bytes:
        """The bytes for ``samples`` (what the muxer released so far)."""
        frame = av.AudioFrame.from_ndarray(np.clip(samples, -1.0, 1.0).astype(np.float32)[np.newaxis],
                                           format="flt", layout="mono")
        frame.sample_rate = self._input_rate
        return self._emit(self._resampler.resample(frame))

    def finish(self) -> bytes:
        """The rest: the resampler's tail, the encoder's delayed packets, the container's trailer."""
        data = self._emit(self._resampler.resample(None))
        if self._container is None:
            return data
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return data + self._sink.take()

    def close(self) -> None:
        """Release the muxer without finishing the file (the response was abandoned)."""
        if self._container is not None:
            try:
                self._container.close()
            except (av.FFmpegError, ValueError, OSError):
                pass
            self._container = None

    def _emit(self, frames: list[Any]) -> bytes:
        if self._container is None:
            pcm = b"".join(bytes(frame.to_ndarray()[0].astype("<i2").tobytes()) for frame in frames)
            if self.format == "wav" and not self._header_sent:
                self._header_sent = True
                return wav_header(self.output_rate) + pcm
            return pcm
        for frame in frames:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return self._sink.take()


class PcmConverter:
    """Raw signed 16-bit little-endian PCM (``rate``, ``channels`` interleaved) → 16 kHz mono float32, chunk by
    chunk (the resampler keeps its state across chunks, so a stream converts as one signal)."""

    def __init__(self, rate: int, channels: int = 1) -> None:
        if not 8000 <= rate <= 192_000 or not 1 <= channels <= 8:
            raise AudioInputError("invalid_audio", f"unsupported raw PCM: {rate} Hz, {channels} channel(s)")
        self._rate = rate
        self._channels = channels
        self._odd = b""
        self._resampler = (None if rate == DECODE_RATE else
                           av.AudioResampler(format="flt", layout="mono", rate=DECODE_RATE))

    def convert(self, data: bytes) -> FloatArray:
        data = self._odd + data
        usable = len(data) - len(data) % (2 * self._channels)
        self._odd = data[usable:]
        samples = np.frombuffer(data[:usable], "<i2").astype(np.float32) / 32768.0
        if self._channels > 1:
            samples = samples.reshape(-1, self._channels).mean(axis=1).astype(np.float32)
        if self._resampler is None or not len(samples):
            return samples
        frame = av.AudioFrame.from_ndarray(samples[np.newaxis], format="flt", layout="mono")
        frame.sample_rate = self._rate
        return _joined(self._resampler.resample(frame))

    def finish(self) -> FloatArray:
        return np.zeros(0, np.float32) if self._resampler is None else _joined(self._resampler.resample(None))


def _joined(frames: list[Any]) -> FloatArray:
    if not frames:
        return np.zeros(0, np.float32)
    return np.concatenate([frame.to_ndarray()[0].astype(np.float32, copy=False) for frame in frames])


def raw_pcm(data: bytes, rate: int, channels: int, *, max_seconds: float) -> FloatArray:
    """A whole raw PCM buffer as 16 kHz mono float32, its duration checked before it is converted."""
    seconds = len(data) / (2 * max(1, channels) * max(1, rate))
    if seconds > max_seconds:
        raise AudioInputError("audio_too_long", f"the audio is {seconds:.0f} s long; at most {max_seconds:g} s")
    converter = PcmConverter(rate, channels)
    return np.concatenate([converter.convert(data), converter.finish()])
