"""CPU per call-second of inbound Opus: aiortc's 48 kHz stereo decode + resampling vs libopus at 16 kHz mono.

Encodes the manifest's 11 s clip as a browser sends it (20 ms mono Opus packets), then decodes
all of it ``--repeat`` times each way, as a call's receiver and inbound reader do per packet:

- ``aiortc``: aiortc's OpusDecoder (FFmpeg's libopus at 48 kHz stereo), then PcmConverter to 16 kHz mono;
- ``libopus 16k``: media.opus_inbound.NativeRateOpusDecoder, then the same PcmConverter (a pass-through).

Prints process CPU ms per second of call audio (p50/p95 over the repeats) and the ratio. The machine's
speed (benchmarks/machine.py) is measured before and after.

Usage: python benchmarks/opus_inbound.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiortc.codecs.opus import OpusDecoder  # noqa: E402
from aiortc.jitterbuffer import JitterFrame  # noqa: E402

from benchmarks.machine import machine_speed  # noqa: E402
from media.opus import OpusFrameEncoder  # noqa: E402
from media.opus_inbound import NativeRateOpusDecoder  # noqa: E402
from media.pcm import PcmConverter, read_audio_file  # noqa: E402
from tests.support.speech import manifest  # noqa: E402


def cpu_ms() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime) * 1000


def packets() -> list[bytes]:
    clip = next(u for u in manifest() if u.file == "whisper_jfk.flac")
    pcm = (read_audio_file(clip.path, 48_000) * 32767).astype(np.int16)
    encoder = OpusFrameEncoder(bit_rate=32_000, complexity=10)
    return [bytes(encoder.encode(pcm[i: i + 960], i)) for i in range(0, len(pcm) - 960, 960)]


def cost_per_second(make: type[OpusDecoder] | type[NativeRateOpusDecoder], data: list[bytes]) -> float:
    decoder, converter = make(), PcmConverter(16_000)
    started = cpu_ms()
    for i, payload in enumerate(data):
        for frame in decoder.decode(JitterFrame(data=payload, timestamp=i * 960)):
            converter.convert(frame)  # type: ignore[arg-type]  # audio decoders make AudioFrames
    return (cpu_ms() - started) / (len(data) * 0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    print("machine before:", machine_speed())
    data = packets()
    rows: dict[str, list[float]] = {"aiortc": [], "libopus 16k": []}
    for _ in range(args.repeat):  # interleaved, so both see the same machine
        rows["aiortc"].append(cost_per_second(OpusDecoder, data))
        rows["libopus 16k"].append(cost_per_second(NativeRateOpusDecoder, data))
    print("machine after:", machine_speed())
    base = statistics.median(rows["aiortc"])
    print(f"\n{'inbound decode':<14} {'CPU ms per call-second p50/p95':>32} {'ratio':>7}")
    for name, values in rows.items():
        ordered = sorted(values)
        print(f"{name:<14} {statistics.median(ordered):>24.2f} / {ordered[round(0.95 * (len(ordered) - 1))]:<6.2f}"
              f" {statistics.median(ordered) / base:>7.2f}")


if __name__ == "__main__":
    main()
