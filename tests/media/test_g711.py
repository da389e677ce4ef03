"""G.711 coding and the 8 kHz ⇄ 16/48 kHz resampling around it, on real speech."""

from __future__ import annotations

import numpy as np
import pytest

from media.g711 import FRAME_BYTES, RATE, G711Decoder, G711Encoder, G711Law, silence
from media.pcm import FloatArray, Int16Array, PcmConverter
from tests.support.speech import utterance

SPEECH = "lhotse_ljspeech_LJ002-0020.wav"  # 1.5 s of read speech


def _speech(rate: int) -> FloatArray:
    return utterance(SPEECH).audio(rate)


def _int16(x: FloatArray) -> Int16Array:
    return np.clip(x * 32767, -32768, 32767).astype(np.int16)


def snr_db(reference: FloatArray, test: FloatArray) -> float:
    """Signal-to-noise ratio of ``test`` against ``reference`` (same length)."""
    noise = test.astype(np.float64) - reference
    return float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / np.sum(noise**2)))


def aligned_snr_db(reference: FloatArray, test: FloatArray, max_lag: int = 64) -> tuple[float, int]:
    """The best SNR over lags of ``test`` behind ``reference`` of 0..max_lag samples, and that lag."""
    best = (-np.inf, 0)
    for lag in range(max_lag + 1):
        n = min(len(reference), len(test) - lag)
        best = max(best, (snr_db(reference[:n], test[lag : lag + n]), lag))
    return best


@pytest.mark.parametrize(("law", "bound_db"), [("pcmu", 35.0), ("pcma", 35.0)])
def test_the_codec_round_trip_of_speech_is_within_the_laws_quantisation_noise(law: G711Law, bound_db: float) -> None:
    speech = _int16(_speech(RATE))
    encoded = G711Encoder(law, rate=RATE).encode_8k(speech)
    assert len(encoded) == len(speech)  # one byte a sample
    decoded = G711Decoder(law, rate=RATE).decode_8k(encoded)
    assert len(decoded) == len(speech)
    # Companding keeps the error proportional to the signal: about 37 dB on speech (measured 37.0 / 37.6).
    assert snr_db(speech.astype(np.float32), decoded.astype(np.float32)) > bound_db


def test_the_two_laws_are_not_interchangeable() -> None:
    speech = _int16(_speech(RATE))
    ulaw = G711Encoder("pcmu", rate=RATE).encode_8k(speech)
    assert ulaw != G711Encoder("pcma", rate=RATE).encode_8k(speech)
    wrong = G711Decoder("pcma", rate=RATE).decode_8k(ulaw)
    assert snr_db(speech.astype(np.float32), wrong.astype(np.float32)) < 5


def test_silence_and_known_code_words_follow_g711() -> None:
    zeros = np.zeros(FRAME_BYTES, np.int16)
    assert G711Encoder("pcmu", rate=RATE).encode_8k(zeros) == silence("pcmu") == b"\xff" * FRAME_BYTES
    assert G711Encoder("pcma", rate=RATE).encode_8k(zeros) == silence("pcma") == b"\xd5" * FRAME_BYTES
    # μ-law 0x00 and A-law 0x2A are the most negative code words (-32124 and -32256 in 16-bit PCM).
    assert G711Decoder("pcmu", rate=RATE).decode_8k(b"\x00")[0] == -32124
    assert G711Decoder("pcma", rate=RATE).decode_8k(b"\x2a")[0] == -32256
    assert G711Decoder("pcmu", rate=RATE).decode_8k(b"\x80")[0] == 32124


@pytest.mark.parametrize("law", ["pcmu", "pcma"])
def test_the_gateways_voice_survives_the_phone_path_in_20_ms_pieces(law: G711Law) -> None:
    """48 kHz voice → 8 kHz G.711 in 20 ms payloads → 16 kHz input: what a phone call does to both directions."""
    voice = _int16(_speech(48_000))
    encoder, decoder = G711Encoder(law), G711Decoder(law)
    payload = b"".join(encoder.encode(voice[i : i + 960]) for i in range(0, len(voice), 960)) + encoder.flush()
    assert abs(len(payload) - len(voice) // 6) <= 1  # no audio lost or invented by the resampler
    heard = np.concatenate([decoder.decode(payload[i : i + FRAME_BYTES]) for i in range(0, len(payload), FRAME_BYTES)])
    # The reference is the same speech band-limited to 4 kHz (resampled to 8 kHz and back), without G.711.
    reference = PcmConverter(16_000).convert_array(_speech(8_000), RATE).astype(np.float32)
    snr, lag = aligned_snr_db(reference, heard)
    assert snr > 30, snr
    assert lag <= 48  # the resamplers delay the audio by a few ms, no more


def test_streaming_matches_one_piece_so_filter_state_is_kept() -> None:
    voice = _int16(_speech(48_000))
    whole_encoder = G711Encoder()
    whole = whole_encoder.encode(voice) + whole_encoder.flush()
    streamed_encoder = G711Encoder()
    streamed = b"".join(streamed_encoder.encode(voice[i : i + 480]) for i in range(0, len(voice), 480))
    streamed += streamed_encoder.flush()
    assert len(streamed) == len(whole)
    agree = np.mean(np.frombuffer(streamed, np.uint8) == np.frombuffer(whole, np.uint8))
    assert agree > 0.99


def test_float_input_and_8_khz_output_rates() -> None:
    speech = _speech(16_000)
    encoder = G711Encoder("pcmu", rate=16_000)
    payload = encoder.encode(speech) + encoder.flush()
    assert abs(len(payload) - len(speech) // 2) <= 1
    decoded = G711Decoder("pcmu", rate=RATE).decode(payload)
    assert decoded.dtype == np.float32 and len(decoded) == len(payload)
    assert 0.05 < float(np.max(np.abs(decoded))) <= 1.0


def test_empty_input_and_unknown_laws() -> None:
    assert G711Encoder().encode(np.zeros(0, np.int16)) == b""
    assert len(G711Decoder().decode(b"")) == 0
    with pytest.raises(ValueError, match=r"unknown G\.711 law"):
        G711Decoder("g729")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown G\.711 law"):
        silence("opus")  # type: ignore[arg-type]
