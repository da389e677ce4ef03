"""What the capacity benchmark sets up before its ramps: the speech, the machine's engine speed, the systems.

* :func:`realistic_speech` — every manifest clip of at most 12 s as it is, longer passages split into
  sentences (Whisper word times, as ``benchmarks/turn_taking.py`` does), written as a manifest the
  load test's caller processes read.
* :func:`engine_speed` — on this machine, in this run: the CPU cost of one Whisper decode of each of
  those utterances and of Piper saying its echo ("You said: …"), the Silero VAD per second of audio,
  and from them the CPU-bound limit: how many calls the cores could hold if the engines were all
  there was.
* :func:`today_worktree`, :func:`start_pipecat` — the other systems: the gateway at another revision
  (a ``git worktree`` run with the same virtualenv) and the Pipecat bot in ``.venv-pipecat``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from benchmarks.latency import free_port
from benchmarks.turn_taking import split_sentences
from qa.clips import write_wav
from tests.support.speech import manifest

REPO = Path(__file__).resolve().parents[1]
RATE = 16_000
MAX_UTTERANCE_S = 12.0
MIN_WORDS = 3  # of a sentence cut from a longer passage
REPLY_PREFIX = "You said: "  # gateway/agents/echo.py
PAUSE_S = 0.65  # the load test's mean pause between a reply and the next utterance (uniform 0.3–1.0 s)
SILENCE_S = 0.5  # end-of-turn silence


def realistic_speech(out: Path) -> Path:
    """Write the utterances (16 kHz WAV) and their ``manifest.tsv`` to ``out``; returns the manifest."""
    from faster_whisper import WhisperModel

    from engines.whisper import packaged_model_path

    model = None
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for clip in manifest():
        audio = clip.audio(RATE)
        if clip.duration <= MAX_UTTERANCE_S:
            pieces = [(clip.file, audio, clip.transcript)]
        else:
            model = model or WhisperModel(str(packaged_model_path()), device="cpu", compute_type="int8",
                                          local_files_only=True)
            segments, _ = model.transcribe(audio, word_timestamps=True, language="en", vad_filter=False)
            words = [w for s in segments for w in (s.words or [])]
            pieces = []
            # A heading ("One." before the sonnet) is no sentence anyone says to an agent.
            sentences = [g for g in split_sentences(words, MAX_UTTERANCE_S) if len(g) >= MIN_WORDS]
            for i, group in enumerate(sentences):
                start, end = max(0, int((group[0].start - 0.1) * RATE)), int((group[-1].end + 0.15) * RATE)
                pieces.append((f"{Path(clip.file).stem}#{i}", _from_first_word(audio[start:end]),
                               "".join(w.word for w in group).strip()))
        for name, samples, transcript in pieces:
            file = Path(name).stem.replace("#", "_") + ".wav"
            write_wav(out / file, (np.clip(samples, -1, 1) * 32767).astype(np.int16), RATE)
            rows.append({"file": file, "duration_s": f"{len(samples) / RATE:.3f}", "transcript": transcript})
    with open(out / "manifest.tsv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "duration_s", "transcript"], delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return out / "manifest.tsv"


def _from_first_word(samples: np.ndarray, *, block: int = RATE // 100, word_blocks: int = 20) -> np.ndarray:
    """A sentence cut from a passage, from 50 ms before its first word.

    Whisper's word times run early: the sonnet's "pity the world…" began with 1 s of the previous line's
    tail (a 100 ms burst, then -45 dB), which the caller counted as the start of its speech, so a
    barge-in with it measured 1.16 s where the gateway stopped 0.1 s after "pity". The first word is
    the first run of ``word_blocks`` 10 ms blocks within 30 dB of the loudest block.
    """
    n = len(samples) // block
    if n == 0:
        return samples
    rms = np.sqrt(np.mean(samples[: n * block].reshape(n, block).astype(np.float64) ** 2, axis=1))
    loud = rms >= rms.max() * 10 ** (-30 / 20)
    run = 0
    for i, is_loud in enumerate(loud):
        run = run + 1 if is_loud else 0
        if run == word_blocks:
            return samples[max(0, (i - word_blocks + 1 - 5) * block):]
    return samples


def utterances(path: Path) -> list[tuple[np.ndarray, str]]:
    from media.pcm import read_audio_file

    with open(path, newline="", encoding="utf-8") as f:
        return [(read_audio_file(path.parent / row["file"], RATE), row["transcript"])
                for row in csv.DictReader(f, delimiter="\t")]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cpu_ms(job: Any) -> float:
    started = _cpu_s()
    job()
    return (_cpu_s() - started) * 1000


def engine_speed(speech: Path) -> dict[str, Any]:
    """Whisper decode CPU ms, Piper CPU RTF, VAD CPU per second, per-turn engine CPU and the CPU-bound limit.

    With the gateway's defaults (one CTranslate2 thread, one BLAS thread, one onnxruntime thread), so
    the CPU time is the work, not threads spinning. Each utterance is decoded and its echo
    synthesised once (after one warm-up).
    """
    import onnxruntime
    from piper import PiperVoice
    from threadpoolctl import threadpool_limits

    from engines.piper_tts import packaged_voice_path
    from engines.whisper import WhisperRecognizer

    said = utterances(speech)
    recognizer = WhisperRecognizer(None, cpu_threads=1)
    voice = PiperVoice.load(str(packaged_voice_path()))
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    voice.session = onnxruntime.InferenceSession(str(packaged_voice_path()), sess_options=options,
                                                 providers=["CPUExecutionProvider"])
    asr_ms, tts_ms, reply_s = [], [], []
    with threadpool_limits(limits=1, user_api="blas"):
        recognizer._transcribe_blocking(said[0][0])  # warm-up
        list(voice.synthesize(REPLY_PREFIX + said[0][1]))
        for audio, text in said:
            asr_ms.append(_cpu_ms(lambda audio=audio: recognizer._transcribe_blocking(audio)))
            chunks: list[Any] = []
            tts_ms.append(_cpu_ms(lambda text=text, out=chunks: out.extend(voice.synthesize(REPLY_PREFIX + text))))
            reply_s.append(sum(len(c.audio_float_array) for c in chunks) / voice.config.sample_rate)
        padded_ms = _padded_window_cpu_ms(recognizer, [audio for audio, _ in said[::3]])
    recognizer.close()
    vad_ms_per_s = _vad_cpu_ms_per_second(said[0][0])
    speech_s = [len(audio) / RATE for audio, _ in said]
    turn_cpu_ms = statistics.mean(a + t for a, t in zip(asr_ms, tts_ms, strict=True))
    cycle_s = statistics.mean(speech_s) + SILENCE_S + statistics.mean(reply_s) + PAUSE_S
    cpu_per_call = turn_cpu_ms / 1000 / cycle_s + vad_ms_per_s / 1000  # CPU seconds per second of call
    padded_turn_ms = turn_cpu_ms - statistics.mean(asr_ms) + padded_ms
    cpu_per_padded_call = padded_turn_ms / 1000 / cycle_s + vad_ms_per_s / 1000
    cores = os.cpu_count() or 1
    return {
        "utterances": len(said), "speech_s_mean": round(statistics.mean(speech_s), 2),
        "whisper_decode_cpu_ms": {"p50": round(statistics.median(asr_ms), 1),
                                  "mean": round(statistics.mean(asr_ms), 1)},
        "piper_cpu_rtf": round(sum(tts_ms) / 1000 / sum(reply_s), 4),
        "vad_cpu_ms_per_s": round(vad_ms_per_s, 2),
        "turn_engine_cpu_ms": round(turn_cpu_ms, 1), "turn_cycle_s": round(cycle_s, 2),
        "cpu_bound_calls": round(cores / cpu_per_call, 1), "cores": cores,
        # Pipecat's WhisperSTTService pads every utterance to Whisper's 30 s window: the same model's cost there
        "whisper_30s_window_cpu_ms": round(padded_ms, 1),
        "cpu_bound_calls_30s_window": round(cores / cpu_per_padded_call, 1),
    }


def _padded_window_cpu_ms(recognizer: Any, audios: list[np.ndarray]) -> float:
    """Mean CPU ms of a decode as Pipecat's Whisper service makes it: faster-whisper's ``transcribe``,
    the audio padded to the 30 s window, greedy (the gateway's model and thread, not its fitted window)."""
    model = recognizer._model
    return statistics.mean(_cpu_ms(lambda audio=audio: list(model.transcribe(audio, beam_size=1, language="en")[0]))
                           for audio in audios)


def _vad_cpu_ms_per_second(audio: np.ndarray) -> float:
    import torch
    from silero_vad import load_silero_vad

    torch.set_num_threads(1)
    model = load_silero_vad(onnx=True)
    frames = [torch.from_numpy(np.ascontiguousarray(audio[i : i + 512])) for i in range(0, len(audio) - 511, 512)]
    frames = (frames * (1 + 10 * RATE // max(1, len(frames) * 512)))[: 10 * RATE // 512]  # 10 s of audio
    spent = _cpu_ms(lambda: [model(frame, RATE) for frame in frames])
    return spent / (len(frames) * 512 / RATE)


@contextlib.contextmanager
def today_worktree(revision: str) -> Iterator[Path]:
    """A detached ``git worktree`` of ``revision`` in a temporary folder, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="capacity-today-")) / "repo"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(folder), revision],
                   check=True)
    try:
        imported = subprocess.run([sys.executable, "-c", "import gateway; print(gateway.__file__)"], cwd=folder,
                                  env={**os.environ, "PYTHONPATH": str(folder)}, capture_output=True, text=True,
                                  check=True).stdout.strip()
        if not Path(imported).resolve().is_relative_to(folder.resolve()):  # an editable install must not win
            raise RuntimeError(f"the gateway at {revision} imports {imported}, not its own code")
        yield folder
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(folder)], check=False)
        shutil.rmtree(folder.parent, ignore_errors=True)


async def start_pipecat(python: Path, *, stock: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    """``benchmarks/pipecat_bot.py`` in Pipecat's own virtualenv, with this venv's models, once it answers."""
    from engines.piper_tts import packaged_voice_path
    from engines.whisper import packaged_model_path

    if not python.exists():  # noqa: ASYNC240 - once, before anything runs
        raise RuntimeError(f"{python} not found: make bench-deps installs Pipecat in .venv-pipecat")
    port = free_port()
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, before the load
        [str(python), str(REPO / "benchmarks" / "pipecat_bot.py"), "--port", str(port),
         "--whisper-model", str(packaged_model_path()), "--piper-voice", str(packaged_voice_path()),
         "--log-level", "ERROR", *(["--stock"] if stock else [])],
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url + "/readyz") as response:
                    if response.status == 200:
                        return process, url
            if process.poll() is not None:
                raise RuntimeError(f"the Pipecat bot exited with {process.returncode}")
            await asyncio.sleep(0.5)
    process.kill()
    raise RuntimeError("the Pipecat bot did not become ready")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        path = realistic_speech(Path(tmp))
        print(path.read_text(), file=sys.stderr)
        print(engine_speed(path))
