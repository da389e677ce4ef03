"""A call relayed through coturn (Debian's ``turnserver``): the TURN relay as the single UDP entry point.

The caller gathers relay candidates only (``iceTransportPolicy: relay``), so a call that connects and is
answered went through the relay; the gateway needs no TURN settings of its own (docs/deployment.md).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.rtcconfiguration import RTCIceTransportPolicy

import qa.caller
from gateway.app.application import create_app
from gateway.voice.engines import Engines
from qa.caller import Caller
from tests.cluster.conftest import API_KEY, cluster_config
from tests.support.ops import free_port

USER, PASSWORD = "caller", "relay-password"


@pytest.fixture
def turn_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("turnserver")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("turnserver is missing (Debian: apt-get install coturn; `make test` installs it)")
        pytest.skip("coturn is not installed (Debian: apt-get install coturn; `make test` does it)")
    port, low = free_port(), 50000 + os.getpid() % 10000
    process = subprocess.Popen(
        [binary, "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", f"--listening-port={port}",
         f"--min-port={low}", f"--max-port={low + 200}", "--lt-cred-mech", f"--user={USER}:{PASSWORD}",
         "--realm=test", "--allow-loopback-peers", "--no-tls", "--no-dtls", "--no-cli", "--fingerprint",
         f"--log-file={tmp_path / 'turn.log'}", "--simple-log", f"--pidfile={tmp_path / 'turn.pid'}",
         f"--userdb={tmp_path / 'turn.db'}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    assert process.poll() is None, (tmp_path / "turn.log").read_text() if (tmp_path / "turn.log").exists() else ""
    try:
        yield f"turn:127.0.0.1:{port}?transport=udp"
    finally:
        process.terminate()
        process.wait(10)


async def test_a_call_relayed_through_coturn_is_answered(engines: Engines, redis_url: str, turn_url: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def relay_only() -> RTCPeerConnection:
        server = RTCIceServer(urls=turn_url, username=USER, credential=PASSWORD)
        return RTCPeerConnection(RTCConfiguration(iceServers=[server], iceTransportPolicy=RTCIceTransportPolicy.RELAY))

    monkeypatch.setattr(qa.caller, "RTCPeerConnection", relay_only)
    port = free_port()
    config = cluster_config(redis_url, "a", port)
    # The relayed candidate is on loopback here (coturn listens on 127.0.0.1): let the gateway use it.
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, allow_loopback_candidates=True))
    server = TestServer(create_app(config, engines=engines), host="127.0.0.1", port=port)
    await server.start_server()
    caller = Caller(str(server.make_url("")).rstrip("/"), token=API_KEY)
    try:
        await caller.connect()
        offer = caller.pc.localDescription.sdp
        assert "typ relay" in offer and "typ host" not in offer
        since = time.monotonic()
        caller.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Relayed."}]}})
        caller.send({"type": "response.create"})
        done = await caller.wait_event("response.done", since=since, timeout=30)
        assert done["response"]["status"] == "completed"
        assert caller.received.audible_seconds(since=since) > 0.3  # the reply's audio came through the relay
    finally:
        await caller.close()
        await server.close()
