"""Opus packets made by the track itself, so aiortc sends them as they are.

aiortc encodes every ``AudioFrame`` a track returns: it upmixes to stereo, runs
the encoder through a thread-pool hop per 20 ms frame and measures the frame's
audio level in a pure-Python loop over its samples. A track that returns
``av.Packet`` objects skips all of that (aiortc only packs them). This encoder
makes those packets: mono voice at a speech bit rate, encoded inline (about
0.1 ms per frame), and once the output has been silent for a few frames, the
encoder's own settled silence packet is reused instead of encoding each silent
frame again. Calls spend most of their time with one side silent, so most
frames cost nothing but a copy.
"""

from __future__ import annotations

import fractions
from typing import Any

import numpy as np
from av import CodecContext
from av.packet import Packet

from media.pcm import Int16Array, int16_frame

RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms
TIME_BASE = fractions.Fraction(1, RATE)
#: Silent frames encoded for real before the settled silence packet is reused: the decoder's
#: state then matches the encoder's when speech resumes.
SETTLE_FRAMES = 5


def negotiated_audio_codec(sdp: str) -> str | None:
    """The codec an audio sender uses after negotiation: the first one of the first audio section.

    aiortc sends with the first codec of the answer's audio m-line (``opus`` for every browser
    and aiortc caller; ``PCMU``/``PCMA`` only when the offer has nothing better).
    """
    in_audio = False
    first_payload: str | None = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            if in_audio:
                break
            parts = line.split()
            in_audio = parts[0] == "m=audio" and len(parts) > 3
            first_payload = parts[3] if in_audio else None
        elif in_audio and line.startswith(f"a=rtpmap:{first_payload} "):
            return line.split(" ", 1)[1].split("/", 1)[0].lower()
    return None


class OpusFrameEncoder:
    """Encodes 20 ms mono 48 kHz int16 frames to Opus packets with the given pts.

    The default, 32 kb/s at complexity 5, is WebRTC's usual rate for mono voice and costs about
    0.1 ms per frame; the QA caller, whose voice is transcribed, uses 64 kb/s at complexity 10.
    """

    def __init__(self, *, bit_rate: int = 32_000, complexity: int = 5) -> None:
        self._codec = CodecContext.create("libopus", "w")
        self._codec.bit_rate = bit_rate
        self._codec.format = "s16"
        self._codec.layout = "mono"
        self._codec.sample_rate = RATE
        self._codec.time_base = TIME_BASE
        self._codec.options = {"application": "voip", "compression_level": str(complexity)}
        self._silence: bytes | None = None
        self._silent_run = 0
        self.frames_encoded = 0

    def encode(self, pcm: Int16Array | None, pts: int) -> Packet[Any]:
        """The packet for one frame; ``pcm`` None means digital silence."""
        if pcm is None:
            if self._silence is not None and self._silent_run >= SETTLE_FRAMES:
                data = self._silence
            else:
                data = self._encode(np.zeros(FRAME_SAMPLES, np.int16))
                self._silent_run += 1
                if self._silent_run >= SETTLE_FRAMES:
                    self._silence = data
        else:
            if len(pcm) != FRAME_SAMPLES:
                raise ValueError(f"frames must hold {FRAME_SAMPLES} samples")
            self._silent_run = 0
            data = self._encode(pcm)
        packet = Packet(data)
        packet.pts = pts
        packet.time_base = TIME_BASE
        return packet

    def _encode(self, pcm: Int16Array) -> bytes:
        frame = int16_frame(pcm, RATE, self.frames_encoded * FRAME_SAMPLES)
        self.frames_encoded += 1
        packets = self._codec.encode(frame)
        # libopus returns one packet per 20 ms frame; were one missing, an empty payload is what
        # a decoder conceals as a lost packet, keeping the timestamps in step.
        return bytes(packets[0]) if packets else b""
