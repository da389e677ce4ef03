"""Headless Chromium driven over the DevTools protocol (a websocket, with aiohttp).

No WebDriver: the tests run the gateway in the same event loop as the browser
driver, so every browser call must be awaitable. :class:`Chromium` starts
Debian's ``chromium`` with a fake microphone that plays a WAV file, and
:class:`Page` evaluates JavaScript, waits for conditions and takes screenshots.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

logger = logging.getLogger(__name__)

CHROMIUM = os.environ.get("VOICE_GATEWAY_CHROMIUM", "/usr/bin/chromium")

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--use-fake-device-for-media-stream",
    "--window-size=1280,900",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class BrowserError(Exception):
    pass


def chromium_path() -> str | None:
    path = shutil.which(CHROMIUM)
    return path


class Chromium:
    """One headless browser process; ``async with Chromium.launch(...)`` closes it."""

    def __init__(self, process: asyncio.subprocess.Process, profile: Path, http: aiohttp.ClientSession,
                 ws: aiohttp.ClientWebSocketResponse) -> None:
        self._process = process
        self._profile = profile
        self._http = http
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._pages: dict[str, Page] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def launch(cls, fake_microphone: Path | None = None, *, allow_microphone: bool = True,
                     within: float = 20.0) -> Chromium:
        """Start Chromium; ``fake_microphone`` is a WAV file played (looped) as the microphone.

        With ``allow_microphone`` every page may use it without a prompt; otherwise pages get
        what ``Browser.setPermission`` says (by default, the prompt, which headless Chromium dismisses).
        """
        path = chromium_path()
        if path is None:
            raise BrowserError(f"{CHROMIUM} not found; install Debian's chromium package")
        profile = Path(tempfile.mkdtemp(prefix="voice-gateway-chromium-"))
        args = [path, *_FLAGS, f"--user-data-dir={profile}", "about:blank"]
        if fake_microphone is not None:
            args.insert(-1, f"--use-file-for-fake-audio-capture={fake_microphone}")
        if allow_microphone:
            args.insert(-1, "--use-fake-ui-for-media-stream")
        process = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        http = aiohttp.ClientSession()
        try:
            port = await _devtools_port(profile, process, within)
            async with http.get(f"http://127.0.0.1:{port}/json/version") as response:
                endpoint = (await response.json())["webSocketDebuggerUrl"]
            ws = await http.ws_connect(endpoint, max_msg_size=0)
        except BaseException:
            await http.close()
            await _stop(process, grace=0)
            shutil.rmtree(profile, ignore_errors=True)
            raise
        return cls(process, profile, http, ws)

    async def __aenter__(self) -> Chromium:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
                   within: float = 30.0) -> dict[str, Any]:
        message_id = next(self._ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = future
        try:
            await self._ws.send_str(json.dumps(message))
            return await asyncio.wait_for(future, within)
        finally:
            self._pending.pop(message_id, None)

    async def new_page(self, url: str) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"])
        self._pages[page.session] = page
        await page.send("Runtime.enable")
        await page.send("Page.enable")
        await page.goto(url)
        return page

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                if "id" in data:
                    future = self._pending.get(data["id"])
                    if future is not None and not future.done():
                        if "error" in data:
                            future.set_exception(BrowserError(f"{data['error'].get('message')}"))
                        else:
                            future.set_result(data.get("result", {}))
                elif "sessionId" in data and data["sessionId"] in self._pages:
                    self._pages[data["sessionId"]].on_event(data["method"], data.get("params", {}))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("DevTools connection failed")
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BrowserError("the browser went away"))

    async def close(self) -> None:
        """Close the browser and delete its profile. Safe to call twice."""
        if self._ws.closed and self._process.returncode is not None:
            return
        with contextlib.suppress(Exception):
            await self.send("Browser.close", within=5)
        await self._ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._http.close()
        await _stop(self._process)
        shutil.rmtree(self._profile, ignore_errors=True)


class Page:
    """One tab, addressed through its flattened DevTools session."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session
        self.console: list[str] = []
        self._loaded = asyncio.Event()

    async def send(self, method: str, params: dict[str, Any] | None = None, within: float = 30.0) -> dict[str, Any]:
        return await self.browser.send(method, params, session=self.session, within=within)

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
            self.console.append(f"{params.get('type')}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.console.append(f"exception: {details.get('exception', {}).get('description', details.get('text'))}")
        elif method == "Page.loadEventFired":
            self._loaded.set()

    async def goto(self, url: str, within: float = 15.0) -> None:
        self._loaded.clear()
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")
        await asyncio.wait_for(self._loaded.wait(), within)

    async def evaluate(self, expression: str, *, within: float = 30.0) -> Any:
        """The value of a JavaScript expression (promises are awaited), as JSON."""
        result = await self.send("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True, "userGesture": True,
        }, within=within)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(details.get("exception", {}).get("description") or details.get("text"))
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, within: float = 30.0, interval: float = 0.1) -> Any:
        """Poll until the expression is truthy; returns its value."""
        deadline = time.monotonic() + within
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {within:.0f} s waiting for {expression!r}; "
                                   f"console: {self.console[-20:]}")
            await asyncio.sleep(interval)

    async def click(self, selector: str) -> None:
        """A real mouse click (a user gesture) in the middle of the element."""
        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent",
                            {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    async def screenshot(self, path: Path) -> bytes:
        result = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})
        data = base64.b64decode(result["data"])
        await asyncio.to_thread(_write, path, data)
        return data


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def _devtools_port(profile: Path, process: asyncio.subprocess.Process, within: float) -> int:
    """Chromium writes the port it chose to ``DevToolsActivePort`` in its profile."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise BrowserError(f"chromium exited with status {process.returncode}")
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(marker.read_text().splitlines()[0])
        await asyncio.sleep(0.05)
    raise BrowserError("chromium did not open its DevTools port")


async def _stop(process: asyncio.subprocess.Process, grace: float = 5.0) -> None:
    """Wait ``grace`` seconds for the process to exit, then terminate it, then kill it."""
    if process.returncode is not None:
        return
    for step in (None, process.terminate, process.kill):
        if step is not None:
            with contextlib.suppress(ProcessLookupError):
                step()
        try:
            await asyncio.wait_for(process.wait(), grace)
            return
        except TimeoutError:
            grace = 3.0
