"""Transcripts under packet loss and jitter on the caller's side: WER per loss level.

For each loss level, one call to an in-process gateway (real engines) goes through the
impairment relay of ``qa.netem`` on the caller's side — media packets from the caller are
dropped at random (``loss``) and delayed by a uniform ±``jitter_ms`` (so reordered) — and says the
clips of ``../shared/speech`` (up to ``--max-clip-seconds`` long). The final transcript of each
utterance (all turns the gateway made of it) is scored against the reference. The call must survive
every level: each clip is answered, nothing ends the call. ``tests/security/test_packet_loss.py``
runs one level in CI; docs/security.md reports a full run.

Usage::

    python benchmarks/loss.py [--levels 0,0.05,0.1,0.15,0.2] [--jitter-ms 20] [--seeds 3] [--prefetch 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from aiohttp.test_utils import TestServer  # noqa: E402

from gateway.app.application import REGISTRY, create_app  # noqa: E402
from gateway.app.engines import load_engines, warm_up  # noqa: E402
from gateway.config import EventsConfig, GatewayConfig, MediaConfig  # noqa: E402
from gateway.voice.engines import Engines  # noqa: E402
from qa.caller import Caller  # noqa: E402
from qa.netem import NetworkImpairment  # noqa: E402
from tests.support.speech import Utterance, manifest, normalize, word_error_rate  # noqa: E402

COMPLETED = "conversation.item.input_audio_transcription.completed"


@dataclass
class Turn:
    clip: str
    reference: str
    transcript: str
    wer: float
    answered: bool


@dataclass
class LevelResult:
    loss: float
    jitter_ms: float
    seed: int = 0
    turns: list[Turn] = field(default_factory=list)
    media_packets: int = 0
    media_dropped: int = 0
    survived: bool = False

    @property
    def wer(self) -> float:
        return round(statistics.fmean(t.wer for t in self.turns), 3) if self.turns else 1.0

    @property
    def answered(self) -> int:
        return sum(t.answered for t in self.turns)


def corpus_wer(turns: list[Turn]) -> float:
    """Word errors over all reference words (an utterance's errors weigh by its length)."""
    words = [len(normalize(t.reference)) for t in turns]
    return round(sum(t.wer * n for t, n in zip(turns, words, strict=True)) / max(1, sum(words)), 3)


def clips(max_seconds: float) -> list[Utterance]:
    return [u for u in manifest() if u.duration <= max_seconds]


async def call_with_loss(url: str, impairment: NetworkImpairment, utterances: list[Utterance]) -> LevelResult:
    """One call through ``impairment`` saying every utterance; what was transcribed and answered."""
    result = LevelResult(impairment.loss, impairment.jitter_ms, impairment.seed)
    caller = Caller(url, network=impairment)
    await caller.connect()
    try:
        await caller.wait_event("session.created")
        for clip in utterances:
            onset, end = await caller.say(clip.audio(), 16_000)
            answered = True
            try:
                await caller.wait_event("response.done", since=end - 1.0, timeout=20)
            except TimeoutError:
                answered = False
            await asyncio.sleep(0.5)
            transcript = " ".join(e["transcript"] for e in caller.events_of(COMPLETED, since=onset - 0.5))
            result.turns.append(Turn(clip.file, clip.transcript, transcript,
                                     round(word_error_rate(clip.transcript, transcript), 3), answered))
            with contextlib.suppress(TimeoutError):
                await caller.wait_event("output_audio_buffer.stopped", since=end - 1.0, timeout=15)
            await asyncio.sleep(0.3)
        result.survived = caller.pc.connectionState == "connected" and not caller.events_of("gateway.session.ended")
        if caller.relay is not None:
            stats = caller.relay.stats()["send"]
            result.media_packets, result.media_dropped = stats["media_packets"], stats["media_dropped"]
    finally:
        await caller.hangup()
    return result


async def run(levels: list[float], jitter_ms: float, prefetch: int, max_clip_s: float, seeds: int,
              engines: Engines) -> list[LevelResult]:
    config = GatewayConfig(events=EventsConfig(file=""), media=MediaConfig(jitter_prefetch_frames=prefetch))
    server = TestServer(create_app(config, engines=engines), host="127.0.0.1")
    await server.start_server()
    results = []
    try:
        url = str(server.make_url("")).rstrip("/")
        for loss in levels:
            level = []
            for seed in range(seeds):
                impairment = NetworkImpairment(loss=loss, jitter_ms=jitter_ms, delay_ms=max(1.0, jitter_ms),
                                               direction="send", seed=seed)
                level.append(await call_with_loss(url, impairment, clips(max_clip_s)))
            turns = [t for r in level for t in r.turns]
            print(f"loss {loss:4.0%}  jitter ±{jitter_ms:.0f} ms  {len(level)} calls  "
                  f"corpus WER {corpus_wer(turns):.3f}  "
                  f"median utterance WER {statistics.median(t.wer for t in turns):.3f}  "
                  f"over 0.5: {sum(t.wer > 0.5 for t in turns)}/{len(turns)}  "
                  f"answered {sum(t.answered for t in turns)}/{len(turns)}  "
                  f"dropped {sum(r.media_dropped for r in level)}/{sum(r.media_packets for r in level)}  "
                  f"survived {all(r.survived for r in level)}", flush=True)
            results.extend(level)
        assert len(server.app[REGISTRY]) == 0
    finally:
        await server.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="0,0.05,0.1,0.15,0.2")
    parser.add_argument("--jitter-ms", type=float, default=20.0)
    parser.add_argument("--prefetch", type=int, default=1, help="media.jitter_prefetch_frames")
    parser.add_argument("--max-clip-seconds", type=float, default=4.0)
    parser.add_argument("--seeds", type=int, default=3, help="calls per level, each with other packets lost")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    async def measure() -> list[LevelResult]:
        engines = load_engines(GatewayConfig())
        await warm_up(engines)
        try:
            return await run([float(x) for x in args.levels.split(",")], args.jitter_ms, args.prefetch,
                             args.max_clip_seconds, args.seeds, engines)
        finally:
            engines.close()

    results = asyncio.run(measure())
    if args.out:
        args.out.write_text(json.dumps([{**asdict(r), "wer": r.wer} for r in results], indent=2) + "\n")
    return 0 if all(r.survived for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
