"""Inbound Opus decoded at 16 kHz mono by libopus: the old path's audio, losses survived, wired into aiortc."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
from aiortc import RTCPeerConnection, rtcrtpreceiver
from aiortc.codecs import get_decoder as aiortc_get_decoder
from aiortc.codecs.opus import OpusDecoder
from aiortc.contrib.media import MediaPlayer
from aiortc.jitterbuffer import JitterFrame
from aiortc.mediastreams import MediaStreamTrack

from engines.silero import SileroVad
from engines.whisper import WhisperRecognizer
from media.opus import OpusFrameEncoder
from media.opus_inbound import NativeRateOpusDecoder, set_inbound_opus_rate
from media.pcm import PcmConverter, read_audio_file
from qa.measure import word_error_rate
from tests.support.speech import SPEECH_DIR, manifest

JFK = next(u for u in manifest() if u.file == "whisper_jfk.flac")


@pytest.fixture(scope="module")
def packets() -> list[bytes]:
    """The 11 s clip as a browser sends it: 20 ms mono Opus packets at 48 kHz."""
    pcm = (read_audio_file(JFK.path, 48_000) * 32767).astype(np.int16)
    encoder = OpusFrameEncoder(bit_rate=32_000, complexity=10)
    return [bytes(encoder.encode(pcm[i: i + 960], i)) for i in range(0, len(pcm) - 960, 960)]


def decode(decoder: OpusDecoder | NativeRateOpusDecoder, packets: list[bytes | None]) -> np.ndarray:
    """What the inbound reader makes of the packets (None: lost, never reaches the decoder)."""
    converter, out = PcmConverter(16_000), []
    for i, data in enumerate(packets):
        if data is not None:
            out += [converter.convert(frame) for frame in decoder.decode(JitterFrame(data=data, timestamp=i * 960))]
    return np.concatenate(out).astype(np.float32)


def aligned_snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """SNR of ``other`` against ``reference`` at the best delay in quarter samples (the resamplers' delays differ)."""
    n = min(len(reference), len(other))
    x, spectrum, freqs = reference[:n], np.fft.rfft(other[:n]), np.fft.rfftfreq(n)
    return max(float(10 * np.log10(np.sum(x**2) / np.sum((x - np.fft.irfft(spectrum * np.exp(-2j * np.pi * freqs * d),
                                                                          n))**2)))
               for d in np.arange(-1.5, 1.75, 0.25))


@pytest.fixture(scope="module")
def whisper() -> Iterator[WhisperRecognizer]:
    engine = WhisperRecognizer()
    yield engine
    engine.close()


async def test_16khz_decode_is_the_old_paths_audio(packets: list[bytes], whisper: WhisperRecognizer) -> None:
    old, new = decode(OpusDecoder(), list(packets)), decode(NativeRateOpusDecoder(), list(packets))
    assert abs(len(new) - len(old)) <= 320 and len(new) == 320 * len(packets)
    assert np.sqrt(np.mean(new**2)) == pytest.approx(np.sqrt(np.mean(old**2)), rel=0.03)  # the same level
    assert aligned_snr_db(old, new) > 14  # measured 16.4 dB: Opus's own decoders at two rates differ a little
    vad = SileroVad()
    probabilities = [await vad.stream().probabilities(a[: len(a) // 512 * 512].reshape(-1, 512)) for a in (old, new)]
    vad.close()
    n = min(map(len, probabilities))
    speech = [np.array(p[:n]) > 0.5 for p in probabilities]
    assert np.mean(speech[0] == speech[1]) > 0.97
    texts = [(await whisper.transcribe(a)).text for a in (old, new)]
    assert texts[0] == texts[1] and word_error_rate(JFK.transcript, texts[1]) < 0.15


async def test_lost_empty_and_corrupt_packets_are_survived(packets: list[bytes], whisper: WhisperRecognizer) -> None:
    lossy: list[bytes | None] = [None if i % 10 == 3 else p for i, p in enumerate(packets)]  # 10 % loss
    decoder = NativeRateOpusDecoder()
    audio = decode(decoder, lossy)
    assert len(audio) == 320 * sum(p is not None for p in lossy)
    assert word_error_rate(JFK.transcript, (await whisper.transcribe(audio)).text) < 0.3
    concealed = decoder.decode(JitterFrame(data=b"", timestamp=0))  # a frame the sender had nothing for
    assert [f.samples for f in concealed] == [320]
    assert decoder.decode(JitterFrame(data=b"\xff\xff\xff\xff\xff", timestamp=0)) == []  # corrupt: skipped
    assert decoder.errors == 1
    assert decode(decoder, packets[:50]).shape == (50 * 320,)  # and decoding goes on


class _Recorder(MediaStreamTrack):
    kind = "audio"


async def test_aiortc_receivers_get_16khz_mono_frames_once_installed() -> None:
    assert set_inbound_opus_rate(16_000)
    try:
        caller, gateway = RTCPeerConnection(), RTCPeerConnection()
        player = MediaPlayer(str(SPEECH_DIR / JFK.file))
        caller.addTrack(player.audio)
        received: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
        gateway.on("track", received.set_result)
        await caller.setLocalDescription(await caller.createOffer())
        await gateway.setRemoteDescription(caller.localDescription)
        await gateway.setLocalDescription(await gateway.createAnswer())
        await caller.setRemoteDescription(gateway.localDescription)
        track = await asyncio.wait_for(received, 10)
        frames = [await asyncio.wait_for(track.recv(), 10) for _ in range(10)]
        assert {(f.sample_rate, f.layout.name, f.samples) for f in frames} == {(16_000, "mono", 320)}
        assert np.abs(np.concatenate([f.to_ndarray().ravel() for f in frames])).max() > 0.01  # speech, not zeros
        await caller.close()
        await gateway.close()
    finally:
        set_inbound_opus_rate(None)
    assert rtcrtpreceiver.get_decoder is aiortc_get_decoder  # type: ignore[attr-defined]
