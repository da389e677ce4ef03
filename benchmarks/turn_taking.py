"""Turn-taking benchmark: semantic end of turn, false interruptions and echo, with the real engines.

One conversation per case (silero-vad, faster-whisper tiny.en, Piper, Smart Turn v3.2 — the
gateway's own engines, loaded as ``voice-gateway serve`` loads them), driven in real time: every
20 ms the gateway's track hands out one frame (as aiortc would) and the caller's next 20 ms of
microphone go in. Times are taken at the gateway (no network, no codec, no jitter buffer).

1. **Paused set** (``../shared/speech``, long passages split into sentences of at most 12 s): each
   sentence as it is (a *control*) and, one case each, with a 400–1000 ms pause inserted at up to
   ``--gaps`` (3) word gaps inside a clause nearest its middle (the sentence is unfinished at the
   pause), at the quietest 20 ms near Whisper's word boundary (its word times are often 0.1 s off).
   ``server_vad`` 500 ms against ``semantic_vad`` (``auto``), interleaved case by case. Cut-off: a
   turn committed before the inserted pause ends, at it or at a natural pause of the recording
   before it (counted apart too). Voice-to-voice on the controls: last speech sample in → first
   reply sample out (echo agent).
2. **Backchannel set**: over a ~4 s reply, voiced coughs, clicks and a door (synthesised with
   numpy), Piper's "yeah", "mm-hmm", "okay", "right", "uh-huh", "yes", "sure": resumed and
   completed vs cancelled; real talk-overs (clips of 1–3 s from ../shared/speech): stopped, and
   the stop time (onset in → first silent frame out).
3. **espeak-ng set** (when espeak-ng is installed): backchannels and short talk-overs in three espeak-ng
   voices, sounds from neither ../shared/speech nor Piper, to check that the rules are general.
4. **Echo set**: the caller's microphone returns the reply 60/90/120 ms later at −6/−12 dB through
   a speakerphone-like band-pass with line noise; self-interruptions with and without
   ``echo_cancellation``, and real talk-overs over the echo (stop time).

Usage: python benchmarks/turn_taking.py [--quick] [--sets paused,backchannel,talkover,espeak,echo] [--match NAME]
[--gaps N] [--verbose] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.machine import machine_speed  # noqa: E402
from gateway.agents import ConversationItem  # noqa: E402
from gateway.config import GatewayConfig  # noqa: E402
from gateway.protocol.session_settings import SessionSettings  # noqa: E402
from gateway.voice.conversation import Conversation  # noqa: E402
from gateway.voice.engines import Engines  # noqa: E402
from gateway.voice.options import VoiceOptions  # noqa: E402
from gateway.voice.transcription import quietest_cut  # noqa: E402
from media import OutboundAudioTrack  # noqa: E402
from qa.caller import speech_end_sample  # noqa: E402
from qa.sounds import noises  # noqa: E402
from tests.support.speech import manifest  # noqa: E402

Audio = npt.NDArray[np.float32]
RATE = 16_000
FRAME = 320
REACH = RATE * 12 // 100  # how far from Whisper's word boundary the acoustic gap between the words is looked for
REPLY = ("Thanks for waiting. Here is what I found for you: three flights leave tomorrow morning, "
         "the first one at seven, and the last one just before noon.")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)


def summary(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50": percentile(values, 0.5), "p95": percentile(values, 0.95),
            "max": round(max(values), 1) if values else None}


# ------------------------------------------------------------------------------------------- material


@dataclass
class Sentence:
    name: str
    audio: Audio  # trimmed to speech, 16 kHz
    gaps: list[tuple[float, float]]  # word gaps inside a clause (end of a word, start of the next), seconds


def sentences(max_seconds: float = 12.0) -> list[Sentence]:
    """Every manifest clip, long ones split into sentences of at most ``max_seconds``, with word gaps."""
    from faster_whisper import WhisperModel

    from engines.whisper import packaged_model_path

    model = WhisperModel(str(packaged_model_path()), device="cpu", compute_type="int8", local_files_only=True)
    out: list[Sentence] = []
    for clip in manifest():
        audio = clip.audio()
        segments, _ = model.transcribe(audio, word_timestamps=True, language="en", vad_filter=False)
        words = [w for s in segments for w in s.words]
        if not words:
            continue
        groups = split_sentences(words, max_seconds) if clip.duration > max_seconds else [words]
        for i, group in enumerate(g for g in groups if g):
            start = max(0, int((group[0].start - 0.05) * RATE))
            end = min(len(audio), int((group[-1].end + 0.05) * RATE))
            if (end - start) / RATE > max_seconds:
                end = start + int(max_seconds * RATE)
            # Only gaps inside a clause: after a word Whisper punctuated (",", ".") the sentence may end there.
            gaps = [(a.end - start / RATE, b.start - start / RATE) for a, b in itertools.pairwise(group)
                    if b.end * RATE <= end and not a.word.strip().endswith((",", ".", ";", ":", "?", "!"))]
            out.append(Sentence(f"{clip.file}#{i}", audio[start:end].copy(), gaps))
    return out


def split_sentences(words: list[Any], max_seconds: float) -> list[list[Any]]:
    """Words grouped into sentences (ending ". ? ! ; :") of at most ``max_seconds``; a sentence longer than
    that is dropped (a truncated sentence is no complete control)."""
    groups: list[list[Any]] = [[]]
    for word in words:
        groups[-1].append(word)
        if word.word.strip().endswith((".", "?", "!", ";", ":")):
            groups.append([])
    out = [g for g in groups if g and g[-1].end - g[0].start <= max_seconds]
    return [g for g in out if g[-1].word.strip().endswith((".", "?", "!", ";", ":"))]


def with_pauses(sentence: Sentence, pauses_s: list[float]) -> list[tuple[Audio, float, float]]:
    """The sentence with a pause of ``pauses_s[i]`` at its i-th word gap nearest the middle (each gap inside a
    clause, between 25 and 75 % of the sentence, with at least 0.2 s of speech after it; one pause per case):
    audio, pause start and end (s) of each."""
    seconds = len(sentence.audio) / RATE
    speech_end = speech_end_sample(sentence.audio, RATE)
    inner = [g for g in sentence.gaps if 0.25 <= (g[0] + g[1]) / 2 / seconds <= 0.75]
    cuts: list[int] = []
    for gap in sorted(inner, key=lambda g: abs((g[0] + g[1]) / 2 - seconds / 2)):
        # Whisper's word times are contiguous and often 0.1 s off: a cut at them can split a word ("clubs").
        around = int((gap[0] + gap[1]) / 2 * RATE)
        low, high = max(0, around - REACH), min(len(sentence.audio), around + REACH)
        cut = quietest_cut(sentence.audio, low, high) + FRAME // 2
        if speech_end - cut >= 0.2 * RATE and all(abs(cut - c) >= 0.15 * RATE for c in cuts):
            cuts.append(cut)
    out = []
    for cut, pause_s in zip(sorted(cuts[: len(pauses_s)]), pauses_s, strict=False):
        silence = np.zeros(int(pause_s * RATE), np.float32)
        out.append((np.concatenate([sentence.audio[:cut], silence, sentence.audio[cut:]]), cut / RATE,
                    cut / RATE + pause_s))
    return out


async def backchannels(engines: Engines) -> dict[str, Audio]:
    out = {}
    for text in ("Yeah.", "Mm-hmm.", "Okay.", "Right.", "Uh-huh.", "Yes.", "Sure.", "Yeah, okay."):
        parts = [p async for p in engines.tts.synthesize(text)]
        audio, rate = np.concatenate([p.samples for p in parts]), parts[0].sample_rate
        index = (np.arange(int(len(audio) * RATE / rate)) * rate / RATE).astype(int)
        out[text] = audio[index].astype(np.float32)
    return out


#: espeak-ng voices and sounds (not in ../shared/speech, not Piper): is the rule general?
ESPEAK_VOICES = ("en-us", "en-gb+f3")
ESPEAK_BACKCHANNELS = ("yeah", "uh huh", "okay", "mm hmm", "hmm")
ESPEAK_TALK_OVERS = ("No.", "One.", "Paris.", "Hold on.", "Not that one.")


def espeak(text: str, voice: str) -> Audio | None:
    """``text`` said by espeak-ng's ``voice``, at 16 kHz; None without espeak-ng."""
    import io
    import shutil
    import subprocess
    import wave

    if shutil.which("espeak-ng") is None:
        return None
    out = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(out)) as w:
        rate = w.getframerate()
        audio = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    index = (np.arange(int(len(audio) * RATE / rate)) * rate / RATE).astype(int)
    return np.asarray(audio[index], np.float32)


def espeak_sounds(texts: tuple[str, ...]) -> dict[str, Audio]:
    said = {f"{voice}:{text}": espeak(text, voice) for voice in ESPEAK_VOICES for text in texts}
    return {name: audio for name, audio in said.items() if audio is not None}


# ----------------------------------------------------------------------------------------------- line


@dataclass(frozen=True)
class EchoPath:
    delay_ms: int
    gain_db: float
    noise: float = 0.002


class Line:
    """One conversation driven in real time: a frame out and 20 ms of microphone in, every 20 ms."""

    def __init__(self, engines: Engines, echo: EchoPath | None = None, **turn: Any) -> None:
        config = GatewayConfig()
        settings = SessionSettings.from_config(config, engines.tts.voices)
        self.settings = replace(settings, agent="echo", turn=replace(settings.turn, **turn))
        self.track = OutboundAudioTrack()
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.conversation = Conversation(call_id="rtc_bench", engines=engines, track=self.track,
                                         send=lambda e: self.events.append((time.monotonic(), e)),
                                         settings=self.settings, options=VoiceOptions.from_config(config))
        self.echo = echo
        self.sent = np.zeros(0, np.float32)
        self.frames: list[tuple[float, bool]] = []  # (when, audible) of each frame out
        self.fed = 0
        self.noise = np.random.default_rng(11)

    async def play(self, audio: Audio, *, until: Callable[[], bool] | None = None, max_s: float = 30.0,
                   marks: dict[int, str] | None = None) -> dict[str, float]:
        """Play ``audio`` then silence until ``until()`` (or ``max_s``); returns when each marked sample went in."""
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        at: dict[str, float] = {}
        for tick in range(int(max_s * 50)):
            chunk = np.zeros(FRAME, np.float32)
            offset = tick * FRAME
            if offset < len(audio):
                piece = audio[offset : offset + FRAME]
                chunk[: len(piece)] = piece
            frame = self.track.next_frame()[1]
            out = np.zeros(960, np.float32) if frame is None else frame.astype(np.float32) / 32768
            self.frames.append((time.monotonic(), frame is not None and bool(np.any(frame))))
            if self.echo is not None:
                chunk += self._echo(out)
            await self.conversation.feed(chunk)
            now = time.monotonic()
            for sample, name in (marks or {}).items():
                if offset <= sample < offset + FRAME:
                    at[name] = now
            self.fed += FRAME
            if offset >= len(audio) and until is not None and until():
                break
            deadline += 0.02
            await asyncio.sleep(max(0.0, deadline - loop.time()))
        return at

    def _echo(self, out: Audio) -> Audio:
        assert self.echo is not None
        self.sent = np.concatenate([self.sent, out.reshape(-1, 3).mean(axis=1)])[-RATE * 2 :]
        delay = self.echo.delay_ms * RATE // 1000
        heard = self.sent[-(FRAME + delay + 8) :][: FRAME + 8]
        if len(heard) < FRAME + 8:
            heard = np.concatenate([np.zeros(FRAME + 8 - len(heard), np.float32), heard])
        band = np.convolve(heard, [0.25, 0.5, 0.25, -0.35, -0.15])[8 : 8 + FRAME]  # speakerphone: no lows
        gain = 10 ** (self.echo.gain_db / 20) * 1.6
        return (band * gain + self.noise.normal(0, self.echo.noise, FRAME)).astype(np.float32)

    def of(self, type_: str, since: float = 0.0) -> list[tuple[float, dict[str, Any]]]:
        return [(t, e) for t, e in self.events if e["type"] == type_ and t >= since]

    def first_audible(self, since: float) -> float | None:
        return next((t for t, audible in self.frames if audible and t >= since), None)

    def first_silent(self, since: float) -> float | None:
        return next((t for t, audible in self.frames if not audible and t >= since), None)

    async def say_reply(self, text: str = REPLY) -> None:
        self.conversation.add_item(ConversationItem(f"item_{len(self.events)}", "assistant", text))
        self.conversation.create_response()
        await self.play(np.zeros(0, np.float32), until=lambda: bool(self.first_audible(0.0)), max_s=10)

    async def close(self) -> None:
        await self.conversation.close()


# ------------------------------------------------------------------------------------------------ sets


async def paused_set(engines: Engines, material: list[Sentence], quick: bool, match: str = "",
                     gaps: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    modes: dict[str, dict[str, Any]] = {"server_vad": {"type": "server_vad", "silence_duration_ms": 500},
                                        "semantic_vad": {"type": "semantic_vad"}}
    results: dict[str, dict[str, Any]] = {m: {"v2v_ms": [], "cut_off": 0, "paused": 0, "judge_ms": [], "cuts": []}
                                          for m in modes}
    chosen = [s for s in (material[::2] if quick else material) if match in s.name]
    for sentence in chosen:
        paused = with_pauses(sentence, [float(rng.uniform(0.4, 1.0)) for _ in range(gaps)])
        for mode, turn in modes.items():
            result = results[mode]
            v2v, judged = await control(engines, sentence, turn)
            result["judge_ms"] += judged
            if v2v is not None:
                result["v2v_ms"].append(v2v)
            for audio, pause_start, pause_end in paused:
                result["paused"] += 1
                cut = await paused_case(engines, audio, pause_start, pause_end, turn)
                if cut is not None:
                    result["cut_off"] += 1
                    result["cuts"].append({"sentence": sentence.name, "pause_at_s": round(pause_start, 2),
                                           "pause_s": round(pause_end - pause_start, 2), **cut})
                    print(f"    {mode} cut {sentence.name} at {pause_start:.2f} s ({cut['at']}) after "
                          f"{cut['transcript']!r} {cut['verdicts']}", file=sys.stderr)
        print(f"  {sentence.name}: " + ", ".join(f"{m} v2v {r['v2v_ms'][-1]:.0f} ms cut {r['cut_off']}/{r['paused']}"
                                                for m, r in results.items() if r["v2v_ms"]), file=sys.stderr)
    return {m: {"voice_to_voice_ms": summary(r["v2v_ms"]), "cut_off_rate": round(r["cut_off"] / max(1, r["paused"]), 3),
                "cut_offs": r["cut_off"], "paused_cases": r["paused"], "sentences": len(chosen),
                "cut_offs_at_inserted_pause": sum(c["at"] == "inserted" for c in r["cuts"]),
                "cut_offs_at_natural_pause": sum(c["at"] == "natural" for c in r["cuts"]),
                "end_of_turn_compute_ms": summary(r["judge_ms"]), "cut": r["cuts"]}
            for m, r in results.items()}


async def control(engines: Engines, sentence: Sentence, turn: dict[str, Any]) -> tuple[float | None, list[float]]:
    """The sentence as it is: voice-to-voice (last speech sample in → first reply sample out), and the judgements."""
    line = Line(engines, **turn)
    end = speech_end_sample(sentence.audio, RATE)  # Whisper's word ends overshoot the speech
    marks = await line.play(sentence.audio, marks={end - 1: "end"},
                            until=lambda: bool(line.of("response.created")) and line.first_audible(0.0) is not None,
                            max_s=len(sentence.audio) / RATE + 10)
    first = line.first_audible(marks.get("end", 0.0))
    v2v = (first - marks["end"]) * 1000 if first is not None and "end" in marks else None
    judged = [e["compute_ms"] for _, e in line.of("gateway.turn.judged")]
    await line.close()
    return v2v, judged


async def paused_case(engines: Engines, audio: Audio, pause_start: float, pause_end: float,
                      turn: dict[str, Any]) -> dict[str, Any] | None:
    """The sentence with a pause inside: what was said when the turn was committed before the pause ended, and
    whether at the inserted pause or at a natural pause of the recording before it (JFK's after "Americans")."""
    line = Line(engines, create_response=False, **turn)
    marks = await line.play(audio, marks={int(pause_start * RATE): "paused", int(pause_end * RATE): "resumed"},
                            until=lambda: bool(line.of("input_audio_buffer.committed")), max_s=len(audio) / RATE + 6)
    committed = line.of("input_audio_buffer.committed")
    cut = None
    if committed and committed[0][0] < marks.get("resumed", float("inf")):
        said = line.of("conversation.item.input_audio_transcription.completed")
        cut = {"transcript": said[0][1]["transcript"] if said else "",
               "at": "natural" if committed[0][0] < marks.get("paused", 0.0) else "inserted",
               "verdicts": [(e["verdict"], e["probability"]) for _, e in line.of("gateway.turn.judged")]}
    await line.close()
    return cut


async def over_reply(engines: Engines, sound: Audio, echo: EchoPath | None = None,
                     **turn: Any) -> tuple[Line, float | None, bool]:
    """A reply, ``sound`` 1 s into it; returns the line, the stop time (ms) and whether the reply completed."""
    line = Line(engines, echo=echo, create_response=False, **turn)
    await line.say_reply()
    await line.play(np.zeros(RATE, np.float32), max_s=1.0)
    onset = int(np.argmax(np.abs(sound) > 0.02))
    marks = await line.play(sound, marks={onset: "onset"}, until=lambda: bool(line.of("response.done")), max_s=25)
    stop = None
    paused = line.of("gateway.response.paused") or line.of("conversation.item.truncated")
    if paused and "onset" in marks:
        silent = line.first_silent(marks["onset"])
        stop = None if silent is None else (silent - marks["onset"]) * 1000
    done = line.of("response.done")
    completed = bool(done) and done[0][1]["response"]["status"] == "completed"
    return line, stop, completed


async def talk_over(engines: Engines, talk: Audio, stops: list[float], **kwargs: Any) -> bool:
    """Real speech over a reply: whether it stopped the reply (its stop time is added to ``stops``)."""
    line, stop, completed = await over_reply(engines, talk, **kwargs)
    if stop is not None:
        stops.append(stop)
    heard = [e.get("transcript") for _, e in line.of("gateway.response.resumed")]
    print(f"  talk-over of {len(talk) / RATE:.1f} s: {'resumed ' + repr(heard) if completed else 'stopped'}"
          f" after {stop and round(stop)} ms", file=sys.stderr)
    await line.close()
    return not completed


async def backchannel_set(engines: Engines, talk_overs: list[Audio], quick: bool,
                          sounds_too: bool = True) -> dict[str, Any]:
    sounds = {**noises(), **(await backchannels(engines))} if sounds_too else {}
    resumed: dict[str, bool] = {}
    for name, sound in sounds.items():
        line, _, completed = await over_reply(engines, sound)
        resumed[name] = completed
        print(f"  {name}: {'resumed, completed' if completed else 'cancelled'}"
              f" (paused {bool(line.of('gateway.response.paused'))})", file=sys.stderr)
        await line.close()
    stops: list[float] = []
    stopped = 0
    for talk in talk_overs[: 4 if quick else None]:
        stopped += await talk_over(engines, talk, stops)
    return {"resumed_and_completed": sum(resumed.values()), "sounds": len(resumed),
            "resume_rate": round(sum(resumed.values()) / max(1, len(resumed)), 3), "per_sound": resumed,
            "talk_overs": len(talk_overs[: 4 if quick else None]), "talk_overs_stopped": stopped,
            "talk_over_stop_ms": summary(stops)}


async def espeak_set(engines: Engines, quick: bool) -> dict[str, Any]:
    """The backchannel set's rules on espeak-ng voices: backchannels resumed, short talk-overs stopped."""
    backchannel_sounds = espeak_sounds(ESPEAK_BACKCHANNELS[::2] if quick else ESPEAK_BACKCHANNELS)
    if not backchannel_sounds:
        return {"skipped": "espeak-ng is not installed"}
    resumed: dict[str, bool] = {}
    for name, sound in backchannel_sounds.items():
        line, _, completed = await over_reply(engines, sound)
        resumed[name] = completed
        print(f"  espeak {name}: {'resumed, completed' if completed else 'cancelled'}", file=sys.stderr)
        await line.close()
    stops: list[float] = []
    stopped: dict[str, bool] = {}
    for name, talk in espeak_sounds(ESPEAK_TALK_OVERS[::2] if quick else ESPEAK_TALK_OVERS).items():
        print(f"  espeak {name}:", file=sys.stderr)
        stopped[name] = await talk_over(engines, talk, stops)
    return {"backchannels": len(resumed), "resumed_and_completed": sum(resumed.values()), "per_backchannel": resumed,
            "talk_overs": len(stopped), "talk_overs_stopped": sum(stopped.values()), "per_talk_over": stopped,
            "talk_over_stop_ms": summary(stops)}


async def echo_set(engines: Engines, talk_overs: list[Audio], quick: bool) -> dict[str, Any]:
    paths = [EchoPath(d, g) for d in (60, 90, 120) for g in (-6.0, -12.0)]
    if quick:
        paths = paths[::2]
    out: dict[str, Any] = {}
    for cancel in (False, True):
        self_interruptions = 0
        for path in paths:
            line, _, _ = await over_reply(engines, np.zeros(RATE * 4, np.float32), echo=path,
                                          echo_cancellation=cancel)
            self_interruptions += bool(line.of("input_audio_buffer.speech_started"))
            await line.close()
        out["with_echo_cancellation" if cancel else "without"] = {"self_interruptions": self_interruptions,
                                                                   "cases": len(paths)}
    stops: list[float] = []
    stopped = 0
    for i, talk in enumerate(talk_overs[: len(paths)]):
        stopped += await talk_over(engines, talk, stops, echo=paths[i % len(paths)], echo_cancellation=True)
    out["talk_overs"] = {"n": min(len(talk_overs), len(paths)), "stopped": stopped, "stop_ms": summary(stops)}
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="half of each set (a busy machine)")
    parser.add_argument("--gaps", type=int, default=3, help="paused cases per sentence (word gaps inside a clause)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--sets", default="paused,backchannel,espeak,echo")
    parser.add_argument("--match", default="", help="only the paused sentences whose name contains this")
    parser.add_argument("--verbose", action="store_true", help="log each pause's verdict and each interruption")
    args = parser.parse_args()
    from gateway.app.engines import load_engines, warm_up

    if args.verbose:
        import logging

        logging.basicConfig(format="    %(message)s", level=logging.WARNING)
        for name in ("gateway.voice.endpointing", "gateway.voice.interruptions"):
            logging.getLogger(name).setLevel(logging.DEBUG)
    speed_before = machine_speed()
    engines = await asyncio.get_running_loop().run_in_executor(None, load_engines, GatewayConfig())
    await warm_up(engines)
    material = sentences()
    talk_overs = [s.audio for s in material if 1.0 <= len(s.audio) / RATE <= 3.0]
    report: dict[str, Any] = {"machine_before": speed_before, "sentences": len(material)}
    started = time.monotonic()
    if "paused" in args.sets:
        report["paused"] = await paused_set(engines, material, args.quick, args.match, args.gaps)
        semantic, server = report["paused"]["semantic_vad"], report["paused"]["server_vad"]
        if semantic["voice_to_voice_ms"]["p50"] and server["voice_to_voice_ms"]["p50"]:
            report["paused"]["v2v_p50_ratio_semantic_over_server"] = round(
                semantic["voice_to_voice_ms"]["p50"] / server["voice_to_voice_ms"]["p50"], 3)
    if "backchannel" in args.sets or "talkover" in args.sets:
        report["backchannel"] = await backchannel_set(engines, talk_overs, args.quick, "backchannel" in args.sets)
    if "espeak" in args.sets:
        report["espeak"] = await espeak_set(engines, args.quick)
    if "echo" in args.sets:
        report["echo"] = await echo_set(engines, talk_overs, args.quick)
    report["wall_s"] = round(time.monotonic() - started, 1)
    report["machine_after"] = machine_speed()
    engines.close()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "turn_taking.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
