"""The capacity benchmark's parts against real peers: a ramp into a full gateway, the audio-only dialogue,
and (when ``make bench-deps`` installed it) the Pipecat bot."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway.config import GatewayConfig
from qa.audio_dialogue import AudioDialogue
from qa.caller import Caller
from qa.clips import load_clip
from qa.loadtest import LoadOptions, run_loadtest
from tests.qa.test_loadtest import manifest
from tests.support.speech import SPEECH_DIR

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PIPECAT_PYTHON = REPO / ".venv-pipecat" / "bin" / "python"


@pytest.fixture
def gateway_config(gateway_config: GatewayConfig) -> GatewayConfig:
    """One call at a time: the second caller of a ramp is refused with 503 + Retry-After."""
    limits = dataclasses.replace(gateway_config.limits, max_calls=1, max_calls_per_client=0,
                                 calls_per_client_per_minute=0)
    return dataclasses.replace(gateway_config, limits=limits)


async def test_a_ramp_into_a_full_gateway_counts_refusals_and_judges_the_admitted_call(
        gateway_url: str, tmp_path: Path) -> None:
    options = LoadOptions(gateway_url, callers=2, duration_s=7, speech=manifest(tmp_path), out=None,
                          ramp_step=1, ramp_interval_s=1.0, barge_in_rate=0.0, max_clip_s=4.0, seed=2)
    report = await run_loadtest(options)
    calls = report["calls"]
    assert calls["connected"] == 1 and calls["max_concurrent"] == 1
    assert calls["refusals"] >= 1 and calls["refused_callers"] == 1  # retried after Retry-After (5 s): refused again
    assert calls["never_admitted"] == 1 and calls["connect_failures"] == 0
    assert {t["caller"] for t in report["turn_records"]} == {0}
    slo = report["slo"]
    assert slo["per_call"]["calls"] == 1 and set(slo["levels"]) == {"1"}
    level = slo["levels"]["1"]
    assert level["turns"] == report["turns"] >= 1 and level["replies"] >= 1
    assert slo["capacity"] == (1 if level["met"] else 0)


async def test_the_audio_alone_measures_a_reply_as_the_events_do(gateway_url: str) -> None:
    caller = Caller(gateway_url)
    await caller.connect()
    try:
        await caller.wait_event("session.created")
        dialogue = AudioDialogue(caller, silence_ms=500)
        turn = await dialogue.speak(load_clip(SPEECH_DIR / "timit_LDC93S1.wav"))
        await dialogue.finish()
    finally:
        await caller.hangup()
    assert turn.error is None and turn.first_audible is not None and turn.overhead_ms is not None
    # the reply is heard after the speech ended (no speed asserted: the machine is shared)
    assert turn.first_audible > turn.speech_end and -500 < turn.overhead_ms < 15_000 and turn.stall_ms is not None
    created = caller.events_of("response.created")
    assert len(created) == 1  # the audio heard was the reply to this turn, and there was one


@pytest.fixture
async def pipecat_url() -> AsyncIterator[str]:
    if not PIPECAT_PYTHON.exists():
        pytest.skip("the Pipecat peer needs `make bench-deps` (.venv-pipecat)")
    from benchmarks.capacity_setup import start_pipecat, stop

    process, url = await start_pipecat(PIPECAT_PYTHON)
    try:
        yield url
    finally:
        await asyncio.get_running_loop().run_in_executor(None, stop, process)


async def test_the_pipecat_bot_answers_an_utterance_with_its_echo(pipecat_url: str, tmp_path: Path) -> None:
    options = LoadOptions(pipecat_url, callers=1, duration_s=8, speech=manifest(tmp_path), out=None,
                          target="pipecat", barge_in_rate=0.0, max_clip_s=4.0, timeout_s=20)
    report = await run_loadtest(options)
    assert report["calls"]["connected"] == 1 and report["replies"] >= 1, report["errors"]
    assert report["overhead_ms"]["count"] >= 1 and report["wer"] is None  # audio only: no transcripts
    async with aiohttp.ClientSession() as http, http.post(pipecat_url + "/api/offer", json={"sdp": "v=0"}) as response:
        assert response.status >= 400  # a broken offer is refused, not a crashed bot


def test_the_pipecat_bot_imports_nothing_of_the_gateway() -> None:
    source = (REPO / "benchmarks" / "pipecat_bot.py").read_text()
    assert not any(line.startswith(("from gateway", "import gateway", "from engines", "from qa"))
                   for line in source.splitlines())
    if not PIPECAT_PYTHON.exists():
        pytest.skip("the Pipecat peer needs `make bench-deps` (.venv-pipecat)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    help_text = subprocess.run([str(PIPECAT_PYTHON), str(REPO / "benchmarks" / "pipecat_bot.py"), "--help"],
                               capture_output=True, text=True, env=env, timeout=120, check=True).stdout
    assert "--whisper-model" in help_text and sys.executable not in help_text
