"""Helpers for operations tests: scraping /metrics, offers, and a gateway in a subprocess."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from aiortc import RTCPeerConnection
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]


class Scrape:
    """One ``/metrics`` page: ``value(name, **labels)`` of a sample (0.0 when absent)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def has(self, name: str, **labels: str) -> bool:
        return (name, frozenset(labels.items())) in self.samples


async def scrape(base_url: str) -> Scrape:
    async with aiohttp.ClientSession() as http, http.get(base_url + "/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        return Scrape(await response.text())


async def get_json(base_url: str, path: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(base_url + path) as response:
        return response.status, await response.json()


async def real_offer() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class GatewayProcess:
    """``voice-gateway`` run as its own process; its output goes to files under ``workdir``."""

    def __init__(self, argv: list[str], workdir: Path, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stdout_path = workdir / "gateway.stdout"
        self.stderr_path = workdir / "gateway.stderr"
        full_env = {**os.environ, **(env or {})}
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(argv, cwd=REPO, env=full_env, stdout=out, stderr=err,
                                            stdin=subprocess.DEVNULL)

    @classmethod
    def serve(cls, workdir: Path, *args: str, env: dict[str, str] | None = None) -> GatewayProcess:
        port = free_port()
        argv = [sys.executable, "-m", "gateway", "serve", "--port", str(port), *args]
        return cls(argv, workdir, env, port)

    @property
    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    async def wait_ready(self, within: float = 90.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"the gateway exited early:\n{self.log}"
            try:
                status, _ = await get_json(self.url, "/readyz")
                if status == 200:
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        raise AssertionError(f"the gateway did not become ready:\n{self.log}")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    async def wait_exit(self, within: float) -> int:
        try:
            return await asyncio.to_thread(self.process.wait, within)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the gateway did not exit within {within} s:\n{self.log}") from None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
