"""Browser tests: headless Chromium with a fake microphone, against a real gateway.

Chromium comes from Debian's ``chromium`` package and the OpenAI Agents SDK from
``npm ci`` in this folder (``make test`` installs both). Without them the tests
are skipped, except under CI, where they fail.
"""

from __future__ import annotations

import asyncio
import os
import wave
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.browser.chromium import Chromium, chromium_path
from tests.support.calls import trimmed
from tests.support.speech import REPO, utterance

HERE = Path(__file__).resolve().parent
ARTIFACTS = REPO / "artifacts" / "browser"
SDK_BUNDLE = HERE / "node_modules" / "@openai" / "agents-realtime" / "dist" / "bundle"
RATE = 48_000



class LaunchBrowser(Protocol):
    async def __call__(self, clips: Sequence[npt.NDArray[np.float32]], *,
                       allow_microphone: bool = True) -> Chromium: ...


def _missing(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} (make test installs it)")
    pytest.skip(what)


@pytest.fixture
async def launch_browser(tmp_path: Path) -> AsyncIterator[LaunchBrowser]:
    """Start Chromium whose microphone plays the given 48 kHz clips once, one after another.

    With ``allow_microphone=False`` pages get the microphone only where ``Browser.setPermission`` grants it.
    """
    if chromium_path() is None:
        _missing("Chromium is not installed (Debian package 'chromium')")
    browsers: list[Chromium] = []

    async def launch(clips: Sequence[npt.NDArray[np.float32]], *, allow_microphone: bool = True) -> Chromium:
        wav = tmp_path / f"microphone-{len(browsers)}.wav"
        await asyncio.to_thread(write_wav, wav, np.concatenate(clips))
        # "%noloop": play the file once, then silence (by default Chromium loops it).
        browser = await Chromium.launch(Path(f"{wav}%noloop"), allow_microphone=allow_microphone)
        browsers.append(browser)
        return browser

    try:
        yield launch
    finally:
        for browser in browsers:
            await browser.close()


def write_wav(path: Path, samples: npt.NDArray[np.float32]) -> None:
    """Chromium's fake capture wants a WAV file: 16-bit PCM, mono, 48 kHz."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm.tobytes())


def silence(seconds: float) -> npt.NDArray[np.float32]:
    return np.zeros(int(seconds * RATE), np.float32)


def speech(name: str) -> npt.NDArray[np.float32]:
    """A clip of ../shared/speech at 48 kHz, without its leading and trailing silence."""
    return trimmed(utterance(name).audio(RATE), RATE)


@pytest.fixture
async def sdk_page_url() -> AsyncIterator[str]:
    """A test page on its own origin that loads the SDK's browser bundle (not the product's page)."""
    async with serve_sdk_page("sdk_page.html") as url:
        yield url


@asynccontextmanager
async def serve_sdk_page(page: str) -> AsyncIterator[str]:
    """The URL of ``page`` (a file here) on its own origin, with the SDK's browser bundle under ``/sdk/``."""
    if not (SDK_BUNDLE / "openai-realtime-agents.mjs").is_file():
        _missing("the OpenAI Agents SDK is not installed (npm ci in tests/browser)")

    async def index(request: web.Request) -> web.FileResponse:
        return web.FileResponse(HERE / page)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_static("/sdk/", SDK_BUNDLE)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/"))
    finally:
        await server.close()
