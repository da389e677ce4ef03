"""A simulated Twilio: opens a signed Media Stream to the gateway and behaves as Twilio's side does.

What it does, after Twilio's public Media Streams documentation:

* connects to ``wss://…/twilio/media-stream`` with ``X-Twilio-Signature`` made by the ``twilio``
  package's ``RequestValidator`` (over the stream URL, no parameters);
* sends ``connected`` and ``start`` (streamSid, callSid, customParameters, μ-law 8 kHz mono), then
  ``media`` every 20 ms for as long as it is connected — the caller's speech when :meth:`say` is
  speaking, μ-law silence otherwise — with ``sequenceNumber``, ``chunk`` and ``timestamp``;
* plays what the gateway sends in real time through a buffer that starts ``playout_delay`` after
  the first audio arrives (Twilio's own buffering and the phone network), echoes each ``mark``
  once the audio before it has been played (a mark with nothing before it at once), and on ``clear``
  drops what it has not played — the frame playing is cut where it was — and echoes the marks still
  queued at once, as Twilio does;
* keeps what it played (:attr:`heard`), when ``clear`` arrived (:attr:`clears`), and every message.

The audio codec is :mod:`media.g711` (tested on its own against G.711's code words).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
from twilio.request_validator import RequestValidator

from media.g711 import FRAME_BYTES, G711Decoder, G711Encoder, silence
from qa.caller import speech_span

FloatArray = npt.NDArray[np.float32]
FRAME_SECONDS = 0.020


@dataclass
class Played:
    """A piece of the gateway's audio, as played: when it started and its μ-law bytes."""

    at: float
    payload: bytes

    @property
    def seconds(self) -> float:
        return len(self.payload) / 8000


@dataclass
class Cut:
    """What a ``clear`` stopped: the frame playing (whole, as it arrived) and the frames still queued."""

    at: float
    playing: bytes | None
    dropped: list[bytes]


@dataclass
class TwilioCaller:
    base_url: str  # http://127.0.0.1:PORT
    token: str | None = None
    stream_sid: str = "MZ" + "0" * 32
    call_sid: str = field(default_factory=lambda: "CA" + secrets.token_hex(16))  # one per call, as Twilio's
    custom_parameters: dict[str, str] = field(default_factory=dict)
    playout_delay: float = 0.06
    echo_marks: bool = True  # False: a broken peer that never says what it played
    host: str | None = None  # the Host Twilio signs and sends (default: the base URL's)
    heard: list[Played] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    cuts: list[Cut] = field(default_factory=list)  # one per clear
    received: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    marks_echoed: int = 0
    foreign: int = 0  # messages whose streamSid is not this stream's (Twilio would reject them)
    close_code: int | None = None
    close_reason: str = ""

    def __post_init__(self) -> None:
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._http: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._speech: list[bytes] = []  # frames waiting to be spoken
        self._sent_at: list[float] = []  # when each frame of the utterance being spoken was sent
        self._spoken = asyncio.Event()
        self._queue: list[tuple[str, bytes | str]] = []  # ("media", bytes) | ("mark", name), not played yet
        self._changed = asyncio.Event()
        self._playhead = 0.0
        self._sequence = 0
        self._chunk = 0

    # ------------------------------------------------------------ connecting

    @property
    def stream_url(self) -> str:
        host = self.host or self.base_url.split("://", 1)[1]
        return f"wss://{host}/twilio/media-stream"

    def signature(self) -> str:
        assert self.token is not None
        return str(RequestValidator(self.token).compute_signature(self.stream_url, {}))

    async def connect(self, *, start: bool = True, signed: bool = True) -> None:
        """Open the stream (signed when a token is set), then send ``connected`` and, by default, ``start``."""
        headers = {"X-Twilio-Signature": self.signature()} if self.token and signed else {}
        if self.host:
            headers["Host"] = self.host
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(self.base_url + "/twilio/media-stream", headers=headers,
                                               max_msg_size=0)
        await self.send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        if start:
            await self.start()

    async def start(self, media_format: dict[str, Any] | None = None) -> None:
        await self.send({"event": "start", "start": {
            "streamSid": self.stream_sid, "callSid": self.call_sid, "accountSid": "AC" + "0" * 32,
            "tracks": ["inbound"], "customParameters": self.custom_parameters,
            "mediaFormat": media_format or {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}})
        self._tasks = [asyncio.create_task(self._stream()), asyncio.create_task(self._receive()),
                       asyncio.create_task(self._play())]

    async def send(self, message: dict[str, Any] | str) -> None:
        assert self._ws is not None
        self._sequence += 1
        if isinstance(message, dict):
            message = json.dumps({**message, "sequenceNumber": str(self._sequence),
                                  **({"streamSid": self.stream_sid} if message["event"] != "connected" else {})})
        await self._ws.send_str(message)

    async def closed(self, within: float = 10.0) -> int | None:
        """Wait until the gateway closes the stream; its close code."""
        assert self._ws is not None
        if self._tasks:  # the receiving task reads the socket (aiohttp allows one reader): it sees the close
            async with asyncio.timeout(within):
                await asyncio.shield(self._tasks[1])
            self.close_code = self._ws.close_code
            return self.close_code
        async with asyncio.timeout(within):
            while not self._ws.closed:
                message = await self._ws.receive()
                if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    self.close_reason = str(message.extra or "")
                    break
        self.close_code = self._ws.close_code
        return self.close_code

    async def hang_up(self) -> None:
        """Twilio's ``stop`` (the caller hung up), then close."""
        if self._ws is not None and not self._ws.closed:
            with contextlib.suppress(ConnectionError):
                await self.send({"event": "stop", "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_sid}})
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._http is not None:
            await self._http.close()

    # ------------------------------------------------------------ speaking

    async def say(self, audio: FloatArray, rate: int = 16_000) -> tuple[float, float]:
        """Speak ``audio`` as μ-law 20 ms frames in real time, and wait until it was all sent.

        Returns when the frames holding the first and the last speech samples (by energy, as the QA
        caller judges them: ``qa.caller.speech_span``) were sent, monotonic."""
        encoder = G711Encoder("pcmu", rate=rate)
        payload = encoder.encode(audio.astype(np.float32)) + encoder.flush()
        frames = [payload[i : i + FRAME_BYTES] for i in range(0, len(payload), FRAME_BYTES)]
        first, last = speech_span(audio, rate)
        self._spoken.clear()
        self._sent_at = []
        self._speech.extend(frames)
        await self._spoken.wait()
        sent = self._sent_at
        return sent[min(len(sent) - 1, first * 50 // rate)], sent[min(len(sent) - 1, max(0, last - 1) * 50 // rate)]

    async def _stream(self) -> None:
        """``media`` every 20 ms, paced against the clock: speech when there is some, silence otherwise."""
        quiet = silence("pcmu")
        next_at = time.monotonic()
        while True:
            speaking = bool(self._speech)
            frame = self._speech.pop(0) if speaking else quiet
            if speaking:
                self._sent_at.append(time.monotonic())
            if not self._speech:
                self._spoken.set()
            self._chunk += 1
            await self.send({"event": "media", "media": {
                "track": "inbound", "chunk": str(self._chunk), "timestamp": str(self._chunk * 20),
                "payload": base64.b64encode(frame).decode()}})
            next_at += FRAME_SECONDS
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    # ------------------------------------------------------------ hearing

    async def _receive(self) -> None:
        assert self._ws is not None
        while True:
            message = await self._ws.receive()
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                self.close_reason = self.close_reason or str(message.extra or "")
                return
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            now = time.monotonic()
            data = json.loads(message.data)
            self.received.append((now, data))
            if data.get("streamSid") != self.stream_sid:
                self.foreign += 1
            if data["event"] == "media":
                if not self._queue and self._playhead < now:
                    self._playhead = now + self.playout_delay  # the buffer fills before playing starts
                self._queue.append(("media", base64.b64decode(data["media"]["payload"])))
            elif data["event"] == "mark":
                self._queue.append(("mark", data["mark"]["name"]))
            elif data["event"] == "clear":
                self.clears.append(now)
                playing = self.heard[-1] if self.heard and self.heard[-1].at + self.heard[-1].seconds > now else None
                dropped = [item for kind, item in self._queue if kind == "media" and isinstance(item, bytes)]
                self.cuts.append(Cut(now, playing.payload if playing else None, dropped))
                marks = [name for kind, name in self._queue if kind == "mark"]
                self._queue.clear()
                self._playhead = now
                self._cut_playing(now)
                for name in marks:  # Twilio echoes the marks it had not reached yet
                    await self._echo(str(name))
            self._changed.set()

    async def _play(self) -> None:
        """Play the queue in real time: a media piece starts at the playhead; a mark is echoed when reached."""
        while True:
            if not self._queue:
                self._changed.clear()
                await self._changed.wait()
                continue
            wait = self._playhead - time.monotonic()
            if wait > 0:
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._changed.wait()  # a clear may empty the queue meanwhile
                continue
            kind, item = self._queue.pop(0)
            if kind == "media":
                assert isinstance(item, bytes)
                self.heard.append(Played(max(self._playhead, time.monotonic() - 0.001), item))
                self._playhead = max(self._playhead, time.monotonic() - 0.001) + len(item) / 8000
            else:
                await self._echo(str(item))

    def _cut_playing(self, now: float) -> None:
        """A clear stops the piece playing now: only what was played of it was heard."""
        if self.heard and self.heard[-1].at + self.heard[-1].seconds > now:
            last = self.heard[-1]
            self.heard[-1] = Played(last.at, last.payload[: max(0, int((now - last.at) * 8000))])

    async def _echo(self, name: str) -> None:
        if not self.echo_marks:
            return
        self.marks_echoed += 1
        with contextlib.suppress(ConnectionError):
            await self.send({"event": "mark", "mark": {"name": name}})

    # ------------------------------------------------------------ analysis

    def media_received(self, since: float = 0.0, until: float = float("inf")) -> list[tuple[float, dict[str, Any]]]:
        return [(at, m) for at, m in self.received if m["event"] == "media" and since <= at < until]

    def heard_seconds(self, since: float = 0.0, until: float = float("inf")) -> float:
        """Seconds of the gateway's audio played that started in [since, until)."""
        return sum(p.seconds for p in self.heard if since <= p.at < until)

    def heard_audio(self, since: float = 0.0, until: float = float("inf"), rate: int = 16_000) -> FloatArray:
        """What was played in [since, until), decoded to ``rate``."""
        payload = b"".join(p.payload for p in self.heard if since <= p.at < until)
        decoder = G711Decoder("pcmu", rate=rate)
        return decoder.decode(payload)

    async def wait_heard(self, seconds: float, *, since: float, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        while self.heard_seconds(since) < seconds:
            if time.monotonic() > deadline:
                raise TimeoutError(f"heard less than {seconds:g} s within {within:g} s")
            await asyncio.sleep(0.02)

    async def wait_quiet(self, *, since: float, quiet: float = 0.6, within: float = 30.0) -> float:
        """Wait until something was heard since ``since``, then nothing for ``quiet`` s; when the last piece ended."""
        async with asyncio.timeout(within):
            while True:
                pieces = [p for p in self.heard if p.at >= since]
                if pieces and time.monotonic() - (pieces[-1].at + pieces[-1].seconds) > quiet and not self._queue:
                    return pieces[-1].at + pieces[-1].seconds
                await asyncio.sleep(0.02)
