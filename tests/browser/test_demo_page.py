"""The demo page (web_demo/) in headless Chromium, its fake microphone playing real speech."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import av
import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from gateway.app.application import REGISTRY
from gateway.config import GatewayConfig
from tests.browser.chromium import Chromium, Page
from tests.browser.conftest import ARTIFACTS, LaunchBrowser, silence, speech
from tests.support.speech import utterance, word_error_rate

pytestmark = pytest.mark.slow

LEAD_IN = 3.0  # seconds of silence before the first words: the page connects meanwhile


async def open_demo(browser: Chromium, gateway_url: str) -> Page:
    page = await browser.new_page(gateway_url + "/")
    await page.wait_for("window.voiceDemo !== undefined", within=10)
    return page


async def texts(page: Page, selector: str) -> list[str]:
    result: list[str] = await page.evaluate(
        f"[...document.querySelectorAll({json.dumps(selector)})].map((e) => e.textContent)"
    )
    return result


def assert_not_blank(png: Path) -> None:
    """A real rendering: many colours and contrast, not one flat colour."""
    with av.open(str(png)) as container:
        pixels = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert pixels.shape[0] >= 400 and pixels.shape[1] >= 600, pixels.shape
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    background = np.all(pixels == np.median(pixels.reshape(-1, 3), axis=0), axis=2).mean()
    assert pixels.std() > 8 and colours > 200 and background < 0.95, (pixels.std(), colours, background)


async def test_a_call_from_the_demo_page(launch_browser: LaunchBrowser, gateway_url: str,
                                         gateway_server: TestServer) -> None:
    clip = utterance("timit_LDC93S1.wav")
    browser = await launch_browser([silence(LEAD_IN), speech(clip.file), silence(8)])
    page = await open_demo(browser, gateway_url)
    await page.click("#connect")
    await page.wait_for("voiceDemo.phase === 'connected'", within=10)

    # The caller's words: greyed partials, then the final transcript.
    final = await page.wait_for("document.querySelector('.turn.user.final .final')?.textContent", within=20)
    assert word_error_rate(clip.transcript, final) <= 0.25, final
    # The reply, as spoken, and heard: the audio element plays and the reply stream carries sound.
    await page.wait_for("!!document.querySelector('.turn.assistant[data-status=completed]')", within=20)
    reply = (await texts(page, ".turn.assistant .spoken"))[0]
    assert reply.startswith("You said:")
    assert word_error_rate(clip.transcript, reply.removeprefix("You said:")) <= 0.25, reply
    levels = await page.evaluate("voiceDemo.levels")
    assert levels["replyAudibleMs"] >= 800 and levels["replyPeakDb"] > -35, levels
    assert (await page.evaluate("voiceDemo.reply"))["playing"]
    # Latency: the gateway's breakdown and the browser's own measure, in the table and under the reply.
    row = await page.wait_for("voiceDemo.latencies.find((r) => r.gatewayMs !== null && r.browserMs !== null)",
                              within=5)
    assert 0 < row["gatewayMs"] < 5000 and 0 < row["browserMs"] < 5000, row
    assert row["stages"]["first_packet_sent"] == row["gatewayMs"]
    cells = await texts(page, "#latency tbody td")
    assert cells[0] == "1" and cells[1].endswith(" ms") and cells[2].endswith(" ms"), cells
    assert "browser heard it after" in (await texts(page, ".turn.assistant .metrics"))[0]
    # The microphone picker lists the (fake) devices once permission is granted.
    assert len(await texts(page, "#microphone option")) >= 2
    # Settings apply live: session.update, answered by session.updated.
    await page.evaluate("const field = document.getElementById('threshold'); field.value = '0.6';"
                        " field.dispatchEvent(new Event('input', {bubbles: true}))")
    await page.click("#apply")
    await page.wait_for("voiceDemo.session.audio.input.turn_detection.threshold === 0.6", within=5)
    assert await page.evaluate("document.getElementById('settings-status').textContent") == "Applied"

    shot = await page.screenshot(ARTIFACTS / "demo-call.png")
    assert len(shot) > 10_000
    assert_not_blank(ARTIFACTS / "demo-call.png")

    await page.click("#hangup")
    await page.wait_for("voiceDemo.phase === 'idle'", within=5)
    registry = gateway_server.app[REGISTRY]
    for _ in range(50):
        if len(registry) == 0:
            break
        await asyncio.sleep(0.1)
    assert len(registry) == 0  # the page's DELETE hung up


async def test_barge_in_shows_the_interrupted_mark(launch_browser: LaunchBrowser, gateway_url: str,
                                                   gateway_config: GatewayConfig) -> None:
    long_clip, interruption = utterance("whisper_jfk.flac"), utterance("ps_goforward.wav")
    # JFK, then, while the reply to it plays (it starts ~1.3 s after his last word), "go forward ten meters".
    browser = await launch_browser([silence(LEAD_IN + 1), speech(long_clip.file), silence(3.5),
                                    speech(interruption.file), silence(8)])
    page = await open_demo(browser, gateway_url)
    # JFK pauses for breath: a longer end-of-turn silence keeps his sentence one turn. Set in the
    # form before connecting, the page applies it with session.update as soon as the session exists.
    await page.evaluate("const field = document.getElementById('silence'); field.value = '1200';"
                        " field.dispatchEvent(new Event('input', {bubbles: true}))")
    await page.click("#connect")
    await page.wait_for("voiceDemo.session?.audio.input.turn_detection.silence_duration_ms === 1200", within=10)
    assert await page.evaluate("document.getElementById('settings-status').textContent") == "Applied"
    # Only the edited field was changed: the others keep the session's values.
    instructions = gateway_config.session.instructions
    assert await page.evaluate("voiceDemo.session.instructions") == instructions
    assert await page.evaluate("document.getElementById('instructions').value") == instructions
    assert not await page.evaluate("!!document.querySelector('.turn.user')"), "speech began before the settings"

    mark = await page.wait_for("document.querySelector('.turn.assistant.interrupted .interrupted-mark')"
                               "?.textContent", within=40)
    assert mark == "interrupted"
    first_user = await page.wait_for("document.querySelector('.turn.user.final .final')?.textContent")
    assert word_error_rate(long_clip.transcript, first_user) <= 0.25, first_user
    heard = (await texts(page, ".turn.assistant.interrupted .spoken"))[0]
    full = "You said: " + first_user
    assert heard and len(heard) < len(full) and full.startswith(heard), (heard, full)
    assert await page.evaluate("document.querySelector('.turn.assistant.interrupted').dataset.status") == "cancelled"

    # The interruption is the next turn, and it is answered in full.
    await page.wait_for("document.querySelectorAll('.turn.user.final').length === 2", within=20)
    second_user = (await texts(page, ".turn.user.final .final"))[1]
    assert word_error_rate(interruption.transcript, second_user) <= 0.25, second_user
    # While the second reply plays (the picture in the README: docs/browser-demo.png).
    await page.wait_for("voiceDemo.latencies.filter((r) => r.browserMs !== null).length === 2", within=10)
    await page.wait_for("voiceDemo.levels.replyDb > -40", within=5, interval=0.02)
    await page.screenshot(ARTIFACTS / "barge-in.png")
    assert_not_blank(ARTIFACTS / "barge-in.png")
    await page.wait_for("document.querySelectorAll('.turn.assistant[data-status=completed]').length === 1",
                        within=20)
    await page.click("#hangup")


async def test_errors_are_shown_plainly_with_a_retry(launch_browser: LaunchBrowser, gateway_url: str,
                                                     gateway_server: TestServer) -> None:
    browser = await launch_browser([silence(1)], allow_microphone=False)
    page = await open_demo(browser, gateway_url)
    error = "document.getElementById('error').hidden ? null : document.getElementById('error-text').textContent"
    retry_visible = "!document.getElementById('retry').hidden"

    # Microphone denied (headless Chromium dismisses the permission prompt).
    await page.click("#connect")
    assert "Microphone access was denied" in await page.wait_for(error, within=5)
    assert await page.evaluate(retry_visible)
    await browser.send("Browser.setPermission", {"permission": {"name": "microphone"}, "setting": "granted",
                                                 "origin": gateway_url})

    # Call refused: the gateway's JSON error message is shown.
    registry = gateway_server.app[REGISTRY]
    registry.draining = True
    await page.click("#retry")
    refused = await page.wait_for(f"({error})?.includes('refused') && ({error})", within=10)
    assert "HTTP 503" in refused and "shutting down" in refused and "(draining)" in refused, refused
    assert await page.evaluate(retry_visible)

    # Retry works once the gateway accepts calls again.
    registry.draining = False
    await page.click("#retry")
    await page.wait_for("voiceDemo.phase === 'connected'", within=10)
    assert await page.evaluate("document.getElementById('error').hidden")

    # Connection lost: the gateway ends the call.
    await registry.close_all("error")
    lost = await page.wait_for(error, within=10)
    assert "ended the call" in lost or "lost" in lost, lost
    assert await page.evaluate(retry_visible)
    assert await page.evaluate("voiceDemo.phase") == "error"
