"""Hostile WebRTC callers (issue 14), through the real HTTP and WebRTC paths: aiortc callers against the app.

A camera's video, data-channel messages beyond the advertised size and channels nobody
asked for, offers full of ICE candidates, audio faster than real time: each is bounded,
and the call next to it goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from aioice import ice as aioice_ice
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack, VideoStreamTrack
from av.packet import Packet

from gateway.app.application import REGISTRY, create_app
from gateway.config import EventsConfig, GatewayConfig, LimitsConfig, ServerConfig
from gateway.session.registry import SessionRegistry
from gateway.session.session import RealtimeSession
from gateway.transports.webrtc import WebRTCTransport
from media.opus import TIME_BASE, OpusFrameEncoder
from qa.caller import Caller
from tests.security.support import EndRecorder, call_id
from tests.support.fakes import fake_engines
from tests.support.ops import real_offer

CALLS = "/v1/realtime/calls"
# Per-client limits off (every caller is 127.0.0.1), and load-based admission too: the hostile callers run in
# this process, and their own load must not make the gateway refuse the call next to them.
TEST_LIMITS = {"max_calls_per_client": 0, "calls_per_client_per_minute": 0, "max_loop_lag_ms": 0}


@dataclass
class Gateway:
    url: str
    registry: SessionRegistry
    ends: EndRecorder

    def call(self, caller: Caller) -> RealtimeSession:
        return self.registry.get(call_id(caller.location))

    def transport(self, caller: Caller) -> WebRTCTransport:
        transport = self.call(caller).transport
        assert isinstance(transport, WebRTCTransport)
        return transport


@contextlib.asynccontextmanager
async def running(server: ServerConfig | None = None, **limits: Any) -> AsyncIterator[Gateway]:
    ends = EndRecorder()
    config = GatewayConfig(events=EventsConfig(file=""), server=server or ServerConfig(),
                           limits=LimitsConfig(**{**TEST_LIMITS, **limits}))
    app = TestServer(create_app(config, engines=fake_engines()[0], observers=[ends]), host="127.0.0.1")
    await app.start_server()
    try:
        yield Gateway(str(app.make_url("")).rstrip("/"), app.app[REGISTRY], ends)
    finally:
        await app.close()


@contextlib.asynccontextmanager
async def connected(gateway: Gateway, caller: Caller | None = None) -> AsyncIterator[Caller]:
    caller = caller or Caller(gateway.url)
    await caller.connect()
    try:
        await caller.wait_event("session.created", timeout=10)
        yield caller
    finally:
        await caller.hangup()


def tone(seconds: float) -> np.ndarray:
    """Loud to the fake engines (one transcribed word per 100 ms), and audio Opus keeps."""
    return (0.5 * np.sin(np.arange(int(seconds * 16_000)) * 2 * np.pi * 440 / 16_000)).astype(np.float32)


async def is_heard(caller: Caller) -> None:
    """The caller's speech is transcribed and answered: its call works."""
    _, end = await caller.say(tone(0.6), 16_000)
    done = await caller.wait_event("conversation.item.input_audio_transcription.completed", since=end - 1,
                                   timeout=15)
    assert done["transcript"].startswith("word")


async def events_answered(caller: Caller) -> None:
    since = time.monotonic()
    caller.send({"type": "session.update", "session": {"instructions": "Still here?"}})
    await caller.wait_event("session.updated", since=since, timeout=10)


def rewrite_answers(caller: Caller, rewrite: Callable[[str], str]) -> list[str]:
    """Make ``caller`` apply the gateway's answer rewritten (a client ignoring it); returns the answers as sent."""
    answers: list[str] = []
    apply = caller.pc.setRemoteDescription

    async def rewritten(description: RTCSessionDescription) -> None:
        answers.append(description.sdp)
        await apply(RTCSessionDescription(sdp=rewrite(description.sdp), type=description.type))

    caller.pc.setRemoteDescription = rewritten  # type: ignore[method-assign,assignment]
    return answers


def media_sections(sdp: str) -> dict[str, list[str]]:
    """The lines of each m-section by its mid."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            current = [line]
        elif current and line.startswith("a=mid:"):
            sections[line[6:]] = current
        if current:
            current.append(line)
    return sections


class LoopLag:
    """The longest the event loop was late for a 10 ms tick while the block ran."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, time.monotonic() - start - 0.01)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.ensure_future(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


# ------------------------------------------------------------------- 1. video sections


async def test_a_camera_is_answered_inactive_and_its_video_is_never_decoded() -> None:
    async with running() as gateway:
        caller = Caller(gateway.url)
        caller.pc.addTrack(VideoStreamTrack())  # 640x480 at 30 fps, offered before the audio (BUNDLE's first)
        # The client ignores the answer and sends its video anyway.
        answers = rewrite_answers(caller, lambda sdp: sdp.replace("a=inactive", "a=recvonly"))
        async with connected(gateway, caller):
            video_mid = next(mid for mid, lines in media_sections(answers[0]).items() if lines[0].startswith("m=video"))
            assert "a=inactive" in media_sections(answers[0])[video_mid]
            transport = gateway.transport(caller)
            video = [t for t in transport.pc.getTransceivers() if t.kind == "video"]
            assert video and all(t.receiver.track is None for t in video)  # no track: nothing decoded or queued
            await is_heard(caller)  # the call works
            await asyncio.sleep(0.5)
            sender = next(s for s in caller.pc.getSenders() if s.track is not None and s.track.kind == "video")
            sent = [s for s in (await sender.getStats()).values() if s.type == "outbound-rtp"]
            assert sent and sent[0].packetsSent > 20  # the video really went out to the gateway
            assert all(t.receiver.track is None for t in transport.pc.getTransceivers() if t.kind == "video")
            assert transport.inbound_audio is not None and transport.inbound_audio.frames_received > 0


async def test_only_the_first_audio_section_is_listened_to() -> None:
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    pc.addTransceiver("audio")
    pc.createDataChannel("oai-events")
    await pc.setLocalDescription(await pc.createOffer())
    offer = pc.localDescription.sdp
    await pc.close()
    async with running() as gateway, aiohttp.ClientSession() as http:
        async with http.post(gateway.url + CALLS, data=offer, headers={"Content-Type": "application/sdp"}) as response:
            assert response.status == 201
            answer, location = await response.text(), response.headers["Location"]
        first, second = (lines for lines in media_sections(answer).values() if lines[0].startswith("m=audio"))
        assert "a=inactive" not in first and "a=inactive" in second
        transport = gateway.registry.get(location.rsplit("/", 1)[1]).transport
        assert isinstance(transport, WebRTCTransport)
        assert len([r for r in transport.pc.getReceivers() if r.track is not None]) == 1
        async with http.delete(gateway.url + location) as response:
            assert response.status == 204


@pytest.mark.parametrize("extra", ["m=text 9 RTP/AVP 98\r\na=mid:9\r\n",
                                   "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:9\r\n"])
async def test_other_media_kinds_and_a_second_data_channel_section_are_refused(extra: str) -> None:
    offer = await real_offer()
    fingerprints = "".join(line + "\r\n" for line in offer.splitlines() if line.startswith("a=fingerprint:"))
    offer = offer.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 9") + extra + fingerprints
    async with running() as gateway, aiohttp.ClientSession() as http:
        async with http.post(gateway.url + CALLS, data=offer, headers={"Content-Type": "application/sdp"}) as response:
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "invalid_sdp"
        assert len(gateway.registry) == 0


# ---------------------------------------------------------------- 2. data channels


async def test_a_data_channel_with_another_label_is_closed_at_once() -> None:
    async with running() as gateway:
        caller = Caller(gateway.url)
        other = caller.pc.createDataChannel("side-channel")
        async with connected(gateway, caller):
            for _ in range(100):
                if other.readyState == "closed":
                    break
                await asyncio.sleep(0.05)
            assert other.readyState == "closed"
            await events_answered(caller)  # the events channel stays open


async def test_a_caller_opening_channel_after_channel_is_hung_up() -> None:
    async with running() as gateway:
        caller = Caller(gateway.url)
        for i in range(7):
            caller.pc.createDataChannel(f"extra-{i}")
        async with connected(gateway, caller):
            reason, _ = await gateway.ends.wait(call_id(caller.location), timeout=10)
            assert reason == "too_many_data_channels"


async def test_the_answer_advertises_the_bounded_message_size_and_an_event_under_it_gets_an_error() -> None:
    async with running(max_event_bytes=64 * 1024) as gateway:
        caller = Caller(gateway.url)
        async with connected(gateway, caller):
            answer = caller.pc.remoteDescription.sdp
            assert re.findall(r"a=max-message-size:(\d+)", answer) == [str(64 * 1024 + 16 * 1024)]
            assert caller._channel.transport._remote_max_message_size == 80 * 1024  # what the client now respects
            caller.send_raw("x" * 70_000)  # over the event limit, within the advertised size
            error = await caller.wait_event("error", timeout=10)
            assert error["error"]["code"] == "event_too_large"
            await events_answered(caller)


async def test_a_message_beyond_the_advertised_size_ends_its_call_without_stalling_the_others() -> None:
    async with running() as gateway, connected(gateway) as bystander:
        hostile = Caller(gateway.url)
        async with connected(gateway, hostile):
            hostile._channel.transport._remote_max_message_size = 0  # a client that ignores the advertised size
            start = time.monotonic()
            async with LoopLag() as lag:
                hostile.send_raw("x" * 50_000_000)
                reason, ended_at = await gateway.ends.wait(call_id(hostile.location), timeout=10)
                await events_answered(bystander)
            assert reason == "message_too_large"
            assert ended_at - start < 2.0
            assert lag.worst < 0.5, f"the event loop stalled for {lag.worst:.2f} s"
        await is_heard(bystander)


# ------------------------------------------------------------------- 3. ICE candidates

HOSTILE_CANDIDATES = [
    "0.0.0.0", "0.1.2.3", "224.0.0.251", "239.255.255.250", "240.0.0.1", "255.255.255.255", "169.254.169.254",
    "fe80::1", "ff02::fb", "::", "::ffff:127.0.0.1", "4f0c7a5e-0d3b-4e3c-9d1a-2b5a6c7d8e9f.local",
]


def offer_with_candidates(offer: str, candidates: list[str]) -> str:
    """``offer`` with its candidates replaced by ``candidates`` in its first m-section (BUNDLE's first)."""
    out, placed = [], False
    for line in offer.splitlines():
        if line.startswith("a=candidate:"):
            continue
        out.append(line)
        if line.startswith("a=mid:") and not placed:
            out += candidates
            placed = True
    return "\r\n".join(out) + "\r\n"


def remote_addresses(transport: WebRTCTransport) -> list[tuple[str, int]]:
    """The caller's candidates aioice has (and sends checks to)."""
    ice_transport = next(t.receiver.transport.transport for t in transport.pc.getTransceivers() if t.kind == "audio")
    return [(c.ip, c.port) for c in ice_transport.getRemoteCandidates()]


async def post_offer(gateway: Gateway, offer: str) -> tuple[str, WebRTCTransport]:
    async with aiohttp.ClientSession() as http, http.post(gateway.url + CALLS, data=offer,
                                                          headers={"Content-Type": "application/sdp"}) as response:
        assert response.status == 201, await response.text()
        location = response.headers["Location"]
    transport = gateway.registry.get(location.rsplit("/", 1)[1]).transport
    assert isinstance(transport, WebRTCTransport)
    return location, transport


async def test_an_offer_of_900_candidates_makes_the_gateway_check_at_most_16() -> None:
    hostile = [f"a=candidate:h{i} 1 udp 2130706431 {host} {5000 + i} typ host" for i, host in
               enumerate(HOSTILE_CANDIDATES)]
    hostile.append("a=candidate:t 1 tcp 2130706431 127.0.0.1 9 typ host tcptype passive")
    many = [f"a=candidate:c{port} 1 udp 2130706431 127.0.0.1 {port} typ host" for port in range(20_000, 20_900)]
    offer = offer_with_candidates(await real_offer(), [*hostile, *many, "a=end-of-candidates"])
    assert len(offer) < 64 * 1024
    server = ServerConfig(allow_loopback_candidates=True)  # loopback: the test's traffic stays on this machine
    async with running(server, max_remote_candidates=16) as gateway:
        _, transport = await post_offer(gateway, offer)
        given = transport.pc.remoteDescription.sdp  # what aiortc was given
        assert [line for line in given.splitlines() if line.startswith("a=candidate:")] == many[:16]
        assert sorted(remote_addresses(transport)) == [("127.0.0.1", port) for port in range(20_000, 20_016)]
    async with running() as gateway:  # by default loopback is dropped too: no browser offers it
        _, transport = await post_offer(gateway, offer)
        assert "a=candidate:" not in transport.pc.remoteDescription.sdp
        assert remote_addresses(transport) == []


class WithoutCandidates:
    """A Caller's offer hook (the one qa.netem's relay uses) that removes every candidate from the offer."""

    async def rewrite_offer(self, sdp: str) -> str:
        return "".join(line + "\r\n" for line in sdp.splitlines() if not line.startswith("a=candidate:"))

    async def rewrite_answer(self, sdp: str) -> str:
        return sdp

    def close(self) -> None:
        pass


async def test_a_caller_whose_candidates_are_all_dropped_still_connects_by_its_checks() -> None:
    async with running() as gateway:
        caller = Caller(gateway.url)
        caller.relay = WithoutCandidates()  # type: ignore[assignment]
        async with connected(gateway, caller):
            transport = gateway.transport(caller)
            assert "a=candidate:" not in transport.pc.remoteDescription.sdp
            # The gateway learnt the caller's address from its checks (peer-reflexive), as behind a NAT.
            assert [c.type for c in next(t.receiver.transport.transport for t in transport.pc.getTransceivers()
                                          if t.kind == "audio").getRemoteCandidates()] == ["prflx"]
            await is_heard(caller)
    async with running(ServerConfig(allow_private_candidates=False)) as gateway:
        private = offer_with_candidates(await real_offer(), ["a=candidate:p 1 udp 2130706431 10.1.2.3 5000 typ host"])
        _, transport = await post_offer(gateway, private)
        assert remote_addresses(transport) == []


async def test_server_ice_addresses_limits_the_answers_candidates() -> None:
    addresses = aioice_ice.get_host_addresses(True, True)  # this machine's (unfiltered outside an answer)
    chosen = addresses[0]
    async with running(ServerConfig(ice_addresses=(chosen,))) as gateway:
        caller = Caller(gateway.url)
        async with connected(gateway, caller):
            answer = caller.pc.remoteDescription.sdp
            hosts = {line.split()[4] for line in answer.splitlines() if line.startswith("a=candidate:")}
            assert hosts == {chosen}, (hosts, addresses)
            local = next(t.receiver.transport.transport.iceGatherer for t in gateway.transport(caller).pc
                         .getTransceivers() if t.kind == "audio")
            assert {c.ip for c in local.getLocalCandidates()} == {chosen}  # not gathered elsewhere either
            offered = {line.split()[4] for line in caller.pc.localDescription.sdp.splitlines()
                       if line.startswith("a=candidate:")}
            assert offered == set(addresses)  # the caller, in this process, gathered on all of them
            await is_heard(caller)


# ------------------------------------------------------------ 8. audio faster than real time


class FloodTrack(MediaStreamTrack):
    """Opus packets of a tone, ``interval`` seconds apart (0: as fast as the event loop turns)."""

    kind = "audio"

    def __init__(self, interval: float = 0.0) -> None:
        super().__init__()
        self.interval, self.sent = interval, 0
        encoder = OpusFrameEncoder()
        frame = (np.sin(np.arange(960) * 2 * np.pi * 440 / 48_000) * 12_000).astype(np.int16)
        self._payloads = [bytes(encoder.encode(frame, 0)) for _ in range(25)]

    def send_opus_packets(self) -> None:
        """The Caller asks for Opus packets: these are."""

    async def recv(self) -> Packet[Any]:
        await asyncio.sleep(self.interval)
        packet = Packet(self._payloads[self.sent % len(self._payloads)])
        packet.pts, packet.time_base = self.sent * 960, TIME_BASE
        self.sent += 1
        return packet


async def deepest_queue(transport: WebRTCTransport, until: Callable[[], bool], seconds: float) -> int:
    """The most frames aiortc's queue for the caller's audio held, sampled every 10 ms."""
    track = next(r.track for r in transport.pc.getReceivers() if r.track is not None and r.track.kind == "audio")
    deepest, deadline = 0, time.monotonic() + seconds
    while not until() and time.monotonic() < deadline:
        deepest = max(deepest, track._queue.qsize())  # type: ignore[attr-defined]  # aiortc's own queue: the test looks, the gateway need not
        await asyncio.sleep(0.01)
    return deepest


async def test_a_caller_flooding_audio_is_dropped_then_hung_up_and_the_next_call_is_heard() -> None:
    async with running() as gateway, connected(gateway) as bystander:
        flooder = Caller(gateway.url)
        flooder.mic = FloodTrack()  # type: ignore[assignment]
        async with connected(gateway, flooder):
            transport, flood_id = gateway.transport(flooder), call_id(flooder.location)
            deepest = await deepest_queue(transport, lambda: flood_id in gateway.ends.ended, 10)
            reason, _ = await gateway.ends.wait(flood_id, timeout=10)
            assert reason == "audio_too_fast"
            notice = await flooder.wait_event("gateway.session.ended", timeout=5)
            assert notice["reason"] == "audio_too_fast"  # the caller is told why before the hang-up
            reader = transport.inbound_audio
            assert reader is not None and reader.seconds_dropped > 5.0
            assert deepest < 200, deepest
        await is_heard(bystander)


async def test_audio_beyond_real_time_is_dropped_while_the_call_goes_on() -> None:
    async with running(max_dropped_audio_seconds=0) as gateway, connected(gateway) as bystander:
        flooder = Caller(gateway.url)
        flood = FloodTrack(interval=0.004)  # about 5 times real time
        flooder.mic = flood  # type: ignore[assignment]
        async with connected(gateway, flooder):
            transport = gateway.transport(flooder)
            start = time.monotonic()
            deepest = await deepest_queue(transport, lambda: False, 3.0)
            reader = transport.inbound_audio
            assert reader is not None
            elapsed = time.monotonic() - start + 1.0  # and the call's first second
            passed = reader.frames_received - reader.frames_dropped
            assert reader.frames_dropped > 0 and flood.sent * 0.02 > 2 * elapsed
            assert passed * 0.02 <= 1.0 + elapsed * 1.06, (passed, elapsed)  # the lead, then real time
            assert deepest < 50, deepest
            assert gateway.registry.has_call(call_id(flooder.location))
            await is_heard(bystander)
