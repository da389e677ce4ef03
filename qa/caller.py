"""A real WebRTC caller (aiortc) that talks to any gateway URL and measures what it hears.

It speaks by playing audio into its outbound track (paced at 20 ms, silence in
between), records every inbound audio frame with its arrival time, and keeps
every ``oai-events`` event. The QA CLI, the benchmarks and the tests use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.audio.frame import AudioFrame
from av.packet import Packet

from media.opus import OpusFrameEncoder, negotiated_audio_codec
from media.pacing import FramePacer
from media.pcm import PcmConverter, int16_frame
from qa.netem import ImpairmentRelay, NetworkImpairment

logger = logging.getLogger(__name__)

RATE = 48_000
FRAME = 960  # 20 ms
AUDIBLE_RMS = 300.0  # int16 RMS over 10 ms: about -40 dBFS
SPEECH_FLOOR = 10 ** (-30 / 20)  # speech is within 30 dB of the clip's loudest 10 ms
MIN_SPEECH_BLOCKS = 5  # ... in runs of at least 50 ms
#: "openai": POST /v1/realtime/calls (SDP), events on oai-events; "pipecat": Pipecat's SmallWebRTC
#: signaling, POST /api/offer with {"sdp", "type"} JSON, audio only (no events), hang up by closing.
SIGNALING = ("openai", "pipecat")


class CallFailed(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after  # the refusal's Retry-After (seconds), when it had one


class _MicrophoneTrack(MediaStreamTrack):
    """Plays queued audio in 20 ms frames; records when marked samples of each clip were sent."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[tuple[npt.NDArray[np.int16], list[tuple[int, asyncio.Future[float]]]]] = deque()
        self._pacer = FramePacer(RATE, FRAME)
        self._opus: OpusFrameEncoder | None = None

    def send_opus_packets(self) -> None:
        """Encode inline to Opus packets (see :mod:`media.opus`): a browser's cost, not aiortc's.

        At 64 kb/s and full complexity the caller's voice reaches the gateway as transparently as
        through aiortc's own 96 kb/s stereo path (the same WER over the manifest, 0.073); 32 kb/s
        at complexity 5 cost a few words (0.096).
        """
        self._opus = OpusFrameEncoder(bit_rate=64_000, complexity=10)

    def play(self, samples: npt.NDArray[np.int16], *marks: int) -> list[asyncio.Future[float]]:
        """Queue 48 kHz int16 audio; each future gets the time its mark (a sample index) was sent.

        The times are taken frame by frame as the frames leave, not computed from the clip's
        length: on a loaded machine a frame may leave late (the pacer then catches up or skips ahead).
        """
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in marks]
        self._queue.append((samples, sorted(zip(marks, futures, strict=True), key=lambda m: m[0])))
        return futures

    def clear(self) -> None:
        self._queue.clear()

    @property
    def busy(self) -> bool:
        return bool(self._queue)

    async def recv(self) -> AudioFrame | Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        pts = await self._pacer.next_pts()
        if self._opus is not None and not self._queue:
            return self._opus.encode(None, pts)
        out = np.zeros(FRAME, np.int16)
        filled = 0
        sent_at = time.monotonic()
        while filled < FRAME and self._queue:
            samples, marks = self._queue[0]
            n = min(FRAME - filled, len(samples))
            out[filled : filled + n] = samples[:n]
            due = [(mark, future) for mark, future in marks if mark < n or n == len(samples)]
            for mark, future in due:
                if not future.done():
                    future.set_result(sent_at + (filled + min(mark, n)) / RATE)
            filled += n
            if n == len(samples):
                self._queue.popleft()
            else:
                self._queue[0] = (samples[n:], [(mark - n, future) for mark, future in marks[len(due):]])
        if self._opus is not None:
            return self._opus.encode(out, pts)
        return int16_frame(out, RATE, pts)


@dataclass
class ReceivedAudio:
    """Inbound audio: 48 kHz mono int16 frames with their arrival times."""

    frames: list[tuple[float, npt.NDArray[np.int16]]] = field(default_factory=list)

    def pcm(self) -> npt.NDArray[np.int16]:
        if not self.frames:
            return np.zeros(0, np.int16)
        return np.concatenate([f for _, f in self.frames])

    def audible_times(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        """Arrival time of each audible 10 ms block received in [since, until]."""
        times = []
        for at, frame in self.frames:
            if at < since or at > until:
                continue
            for i in range(0, len(frame) - RATE // 100 + 1, RATE // 100):
                block = frame[i : i + RATE // 100].astype(np.float32)
                if np.sqrt(np.mean(block * block)) >= AUDIBLE_RMS:
                    times.append(at + i / RATE)
        return times

    def first_audible(self, since: float = 0.0) -> float | None:
        times = self.audible_times(since)
        return times[0] if times else None

    def last_audible(self, since: float = 0.0, until: float = float("inf")) -> float | None:
        times = self.audible_times(since, until)
        return times[-1] if times else None

    def audible_seconds(self, since: float = 0.0, until: float = float("inf")) -> float:
        return len(self.audible_times(since, until)) / 100


def _retry_after(headers: Any) -> float | None:
    """A refusal's ``Retry-After`` in seconds (the delay form only); None when absent or not a number."""
    try:
        return max(0.0, float(headers.get("Retry-After")))
    except (TypeError, ValueError):
        return None


def speech_span(samples: npt.NDArray[np.float32], rate: int) -> tuple[int, int]:
    """(first, one past the last) sample of speech in a clip, judged by energy alone.

    Speech is any run of at least 50 ms of 10 ms blocks within 30 dB of the clip's
    loudest block: a click before the words or breath and noise after them do not
    count. Independent of the gateway's VAD, so it can measure it.
    """
    block = rate // 100
    n = len(samples) // block
    if n == 0:
        return 0, len(samples)
    rms = np.sqrt(np.mean(samples[: n * block].reshape(n, block).astype(np.float64) ** 2, axis=1))
    loud = rms >= rms.max() * SPEECH_FLOOR
    runs: list[tuple[int, int]] = []
    i = 0
    while i < n:
        if not loud[i]:
            i += 1
            continue
        j = i
        while j < n and loud[j]:
            j += 1
        runs.append((i, j))
        i = j
    long_runs = [r for r in runs if r[1] - r[0] >= MIN_SPEECH_BLOCKS] or runs
    if not long_runs:
        return 0, len(samples)
    return long_runs[0][0] * block, long_runs[-1][1] * block


def speech_end_sample(samples: npt.NDArray[np.float32], rate: int) -> int:
    """Index just after the last sample of speech (see :func:`speech_span`)."""
    return speech_span(samples, rate)[1]


def speech_start_sample(samples: npt.NDArray[np.float32], rate: int) -> int:
    """Index of the first sample of speech (see :func:`speech_span`)."""
    return speech_span(samples, rate)[0]


class Caller:
    """One call to a gateway: ``await connect()``, ``say()``, read ``events``, ``hangup()``."""

    def __init__(self, base_url: str, *, token: str | None = None, session: dict[str, Any] | None = None,
                 network: NetworkImpairment | None = None, signaling: str = "openai") -> None:
        if signaling not in SIGNALING:
            raise ValueError(f"signaling must be one of {', '.join(SIGNALING)}")
        self.base_url = base_url.rstrip("/")
        self.signaling = signaling
        self.token = token
        self.session_config = session
        # With an impairment, all of the call's packets go through a local relay (see qa.netem).
        self.relay = ImpairmentRelay(network) if network is not None and network.active else None
        self.pc = RTCPeerConnection()
        self.mic = _MicrophoneTrack()
        self.received = ReceivedAudio()
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.location: str | None = None
        self._event_signal = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._notifications: set[asyncio.Future[None]] = set()
        self._channel = self.pc.createDataChannel("oai-events")
        self._channel_open = asyncio.Event()
        self._channel.on("open", self._channel_open.set)
        self._channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    async def connect(self, timeout: float = 20.0) -> None:  # noqa: ASYNC109 - public API
        self.pc.addTrack(self.mic)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = self.pc.localDescription.sdp
        if self.relay is not None:
            offer = await self.relay.rewrite_offer(offer)
        if self.signaling == "pipecat":
            body = await self._pipecat_offer(offer)
        else:
            body = await self._openai_offer(offer)
        if self.relay is not None:
            body = await self.relay.rewrite_answer(body)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
        if negotiated_audio_codec(body) == "opus":
            self.mic.send_opus_packets()
        if self.signaling == "openai":
            await asyncio.wait_for(self._channel_open.wait(), timeout)

    async def _pipecat_offer(self, offer: str) -> str:
        async with aiohttp.ClientSession() as http, \
                http.post(f"{self.base_url}/api/offer", json={"sdp": offer, "type": "offer"}) as response:
            if response.status != 200:
                await self._abandon()
                raise CallFailed(response.status, (await response.text())[:200],
                                 retry_after=_retry_after(response.headers))
            answer: dict[str, Any] = await response.json()
        return str(answer["sdp"])

    async def _abandon(self) -> None:
        await self.pc.close()
        if self.relay is not None:
            self.relay.close()

    async def _openai_offer(self, offer: str) -> str:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        async with aiohttp.ClientSession() as http:
            if self.session_config is None:
                headers["Content-Type"] = "application/sdp"
                request = http.post(f"{self.base_url}/v1/realtime/calls", data=offer, headers=headers)
            else:
                form = aiohttp.FormData()
                form.add_field("sdp", offer, content_type="application/sdp")
                form.add_field("session", json.dumps(self.session_config), content_type="application/json")
                request = http.post(f"{self.base_url}/v1/realtime/calls", data=form, headers=headers)
            async with request as response:
                body = await response.text()
                if response.status != 201:
                    code = message = None
                    with contextlib.suppress(Exception):
                        error = json.loads(body)["error"]
                        code, message = error.get("code"), error.get("message")
                    await self._abandon()
                    raise CallFailed(response.status, message or body[:200], code,
                                     retry_after=_retry_after(response.headers))
                self.location = response.headers.get("Location")
        return body

    def send(self, event: dict[str, Any]) -> None:
        self._channel.send(json.dumps(event))

    def send_raw(self, message: str | bytes) -> None:
        self._channel.send(message)

    async def say(self, samples: npt.NDArray[np.float32], rate: int) -> tuple[float, float]:
        """Play ``samples`` as the caller's voice and wait until all of it was sent.

        Returns the monotonic times at which the first and the last speech samples
        (by energy, ignoring leading and trailing silence) left the caller. Raises
        ``ConnectionError`` when the call's connection fails or closes first: nothing
        sends the audio any more, so waiting would never end.
        """
        pcm = PcmConverter(RATE, sample_format="s16").convert_array(samples.astype(np.float32), rate)
        pcm = pcm.astype(np.int16, copy=False)
        start = min(len(pcm) - 1, speech_start_sample(samples, rate) * RATE // rate)
        end = min(len(pcm), speech_end_sample(samples, rate) * RATE // rate) - 1
        onset, end_at = self.mic.play(pcm, max(0, start), max(0, end))
        while self.mic.busy:  # the track empties on the media clock
            if self.pc.connectionState in ("failed", "closed"):
                self.mic.clear()
                raise ConnectionError(f"the call's connection {self.pc.connectionState} while the caller spoke")
            await asyncio.sleep(0.01)
        return await onset, await end_at

    async def silence(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def events_of(self, type_: str, since: float = 0.0) -> list[dict[str, Any]]:
        return [event for at, event in self.events if event.get("type") == type_ and at >= since]

    async def wait_event(self, type_: str, *, timeout: float = 30.0, since: float = 0.0,  # noqa: ASYNC109
                         where: Any = None) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            async with self._event_signal:
                while True:
                    for at, event in self.events:
                        if at >= since and event.get("type") == type_ and (where is None or where(event)):
                            return event
                    await self._event_signal.wait()

        return await asyncio.wait_for(find(), timeout)

    async def hangup(self) -> None:
        if self.location is not None:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with aiohttp.ClientSession() as http:
                    headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
                    async with http.delete(self.base_url + self.location, headers=headers,
                                           timeout=aiohttp.ClientTimeout(total=10)):
                        pass
            self.location = None
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self.mic.stop()
        await self.pc.close()
        if self.relay is not None:
            self.relay.close()

    def _on_message(self, message: object) -> None:
        if not isinstance(message, str):
            return
        with contextlib.suppress(json.JSONDecodeError):
            event = json.loads(message)
            self.events.append((time.monotonic(), event))
            notification = asyncio.ensure_future(self._notify())
            self._notifications.add(notification)
            notification.add_done_callback(self._notifications.discard)

    async def _notify(self) -> None:
        async with self._event_signal:
            self._event_signal.notify_all()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.ensure_future(self._record(track)))

    async def _record(self, track: MediaStreamTrack) -> None:
        converter = PcmConverter(RATE, sample_format="s16")
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            at = time.monotonic()
            pcm = converter.convert(frame).astype(np.int16, copy=False)  # type: ignore[arg-type]
            if len(pcm):
                self.received.frames.append((at, pcm))
