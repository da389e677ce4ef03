"""Inbound Opus decoded by libopus straight to 16 kHz mono, instead of aiortc's 48 kHz stereo.

aiortc's receiver decodes every Opus packet with FFmpeg's libopus wrapper, which always
outputs 48 kHz (FFmpeg forces the rate), in stereo; the gateway then resamples each 20 ms
frame to the 16 kHz mono its VAD and recogniser take. libopus itself decodes at 16 kHz
natively (its decoder synthesises at the requested rate, no resampler), so this module asks
libopus for that directly, through ctypes: no resampling, a sixth of the samples to move
(benchmarks/opus_inbound.py measures the CPU per call-second of both paths).

Like :mod:`media.jitter`, this is one contained extension point: :func:`set_inbound_opus_rate`
replaces the ``get_decoder`` that ``aiortc.rtcrtpreceiver``'s decoder thread calls, for
``audio/opus`` only, process-wide (every receiver created afterwards, an in-process QA caller's
too). Losses are handled as before: the jitter buffer gives a lost packet up and the decoder
never sees it (aiortc applies neither FEC nor concealment); an empty payload, which a sender
emits for a frame it had nothing for, is concealed by libopus as a lost frame. Should libopus
not load, a warning is logged and aiortc's decoder stays.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fractions
import glob
import logging
import os
from typing import Any

import av
import numpy as np
from aiortc import rtcrtpreceiver
from aiortc.codecs import get_decoder as aiortc_get_decoder
from aiortc.codecs.base import Decoder
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av.audio.frame import AudioFrame
from av.frame import Frame

logger = logging.getLogger(__name__)

RTP_RATE = 48_000  # Opus RTP timestamps count at 48 kHz whatever the decoded rate (RFC 7587)
MAX_FRAME_MS = 120  # the longest Opus packet
RATES = (8000, 12000, 16000, 24000, 48000)  # what libopus decodes to natively
#: aiortc's path hands on a stereo frame that libswresample downmixes to mono as (L + R) / √2: √2 (+3 dB) above
#: the sender's level (measured 1.38 on the manifest's 11 s clip). The same gain here keeps the VAD's calibration.
AIORTC_LEVEL = 2 ** 0.5
_library: ctypes.CDLL | None = None
_rate: int | None = None


def libopus() -> ctypes.CDLL:
    """libopus: the system's, else the copy bundled with av's wheel (raises OSError when neither loads)."""
    global _library
    if _library is None:
        candidates = [ctypes.util.find_library("opus")]
        candidates += sorted(glob.glob(os.path.join(os.path.dirname(av.__file__), os.pardir, "av.libs", "libopus*")))
        for name in filter(None, candidates):
            try:
                library = ctypes.CDLL(name)
            except OSError:
                continue
            library.opus_decoder_create.restype = ctypes.c_void_p
            library.opus_decoder_create.argtypes = [ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
            library.opus_decode_float.restype = ctypes.c_int
            library.opus_decode_float.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32,
                                                  ctypes.POINTER(ctypes.c_float), ctypes.c_int, ctypes.c_int]
            library.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
            _library = library
            break
        else:
            raise OSError("libopus not found (neither the system's nor av's bundled copy)")
    return _library


class NativeRateOpusDecoder(Decoder):
    """An aiortc decoder: each RTP Opus payload to one mono float32 frame at ``rate``, in libopus."""

    def __init__(self, rate: int = 16_000, *, gain: float = AIORTC_LEVEL) -> None:
        if rate not in RATES:
            raise ValueError(f"libopus decodes at {RATES} Hz only")
        self._lib = libopus()
        error = ctypes.c_int(0)
        self._state = self._lib.opus_decoder_create(rate, 1, ctypes.byref(error))
        if not self._state or error.value:
            raise OSError(f"opus_decoder_create failed ({error.value})")
        self.rate = rate
        self._gain = np.float32(gain)
        self._time_base = fractions.Fraction(1, rate)
        self._pcm = np.zeros(rate * MAX_FRAME_MS // 1000, np.float32)
        self._last_samples = rate // 50
        self.errors = 0

    def decode(self, encoded_frame: JitterFrame) -> list[Frame]:
        """The frame of one packet; an empty payload is concealed; a corrupt one is counted and skipped."""
        data = encoded_frame.data
        out = self._pcm.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        if data:
            count = self._lib.opus_decode_float(self._state, data, len(data), out, len(self._pcm), 0)
        else:  # concealment of one frame as long as the last
            count = self._lib.opus_decode_float(self._state, None, 0, out, self._last_samples, 0)
        if count <= 0:
            self.errors += 1  # never raise: an exception other than av's would end aiortc's decoder thread
            if self.errors == 1:
                logger.warning("inbound opus: libopus could not decode a packet (%d); skipping it", count)
            return []
        self._last_samples = count
        frame = AudioFrame.from_ndarray((self._pcm[:count] * self._gain).reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = encoded_frame.timestamp * self.rate // RTP_RATE
        frame.time_base = self._time_base
        return [frame]

    def __del__(self) -> None:
        state, self._state = getattr(self, "_state", None), None
        if state:
            self._lib.opus_decoder_destroy(state)


def _get_decoder(codec: RTCRtpCodecParameters) -> Any:
    if _rate is not None and codec.mimeType.lower() == "audio/opus":
        return NativeRateOpusDecoder(_rate)
    return aiortc_get_decoder(codec)


def set_inbound_opus_rate(rate: int | None) -> bool:
    """Decode inbound Opus at ``rate`` (16000 for the gateway) in libopus; None: aiortc's 48 kHz stereo.

    Returns whether the native-rate decoder is in place (False, with a warning, when libopus does not load).
    """
    global _rate
    if rate is not None and rate not in RATES:
        raise ValueError(f"libopus decodes at {RATES} Hz only")
    if rate is not None:
        try:
            libopus()
        except OSError as exc:
            logger.warning("%s: inbound Opus stays decoded by aiortc at 48 kHz stereo", exc)
            rate = None
    _rate = rate
    rtcrtpreceiver.get_decoder = _get_decoder if rate is not None else aiortc_get_decoder  # type: ignore[attr-defined]
    return rate is not None
