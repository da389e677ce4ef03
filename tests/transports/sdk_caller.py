"""A Realtime WebSocket caller written with the official ``openai`` SDK, streaming real speech in real time."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import numpy.typing as npt
from openai import AsyncOpenAI

from media.pcm import PcmConverter

CHUNK_SECONDS = 0.02
WIRE_RATE = 24_000


def sdk_client(gateway_url: str, api_key: str = "sk-test") -> AsyncOpenAI:
    """The SDK pointed at the gateway: only the base URLs differ from OpenAI's."""
    ws_url = gateway_url.replace("http://", "ws://", 1)
    return AsyncOpenAI(api_key=api_key, base_url=f"{gateway_url}/v1", websocket_base_url=f"{ws_url}/v1")


def to_pcm24(audio16k: npt.NDArray[np.float32]) -> bytes:
    pcm = PcmConverter(WIRE_RATE, sample_format="s16").convert_array(audio16k, 16_000)
    return np.ascontiguousarray(pcm, dtype="<i2").tobytes()


def pcm24_to_16k(data: bytes) -> npt.NDArray[np.float32]:
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0
    return PcmConverter(16_000).convert_array(samples, WIRE_RATE).astype(np.float32)


class SdkCaller:
    """Events as ``(monotonic time, event dict)``; audio sent in real time, 20 ms a message."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for event in self.connection:
            self.events.append((time.monotonic(), event.model_dump(warnings=False)))
            self._changed.set()

    async def close(self) -> None:
        await self.connection.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def send_pcm(self, data: bytes, *, bytes_per_second: int = WIRE_RATE * 2) -> None:
        """``data`` as appends of 20 ms, each sent when the wall clock reaches it."""
        chunk = int(bytes_per_second * CHUNK_SECONDS)
        start = time.monotonic()
        for i, offset in enumerate(range(0, len(data), chunk)):
            piece = base64.b64encode(data[offset:offset + chunk]).decode()
            await self.connection.input_audio_buffer.append(audio=piece)
            delay = start + (i + 1) * CHUNK_SECONDS - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def say(self, audio16k: npt.NDArray[np.float32], *, trailing_silence: float = 1.0) -> float:
        """Speak ``audio16k`` then silence; returns when the speech (not the silence) ended."""
        await self.send_pcm(to_pcm24(audio16k))
        speech_end = time.monotonic()
        await self.send_pcm(bytes(int(WIRE_RATE * 2 * trailing_silence)))
        return speech_end

    def of(self, type_: str, since: float = 0.0) -> list[dict[str, Any]]:
        return [e for at, e in self.events if at >= since and e["type"] == type_]

    def types(self, since: float = 0.0) -> list[str]:
        return [e["type"] for at, e in self.events if at >= since]

    async def wait_event(self, type_: str, *, since: float = 0.0, timeout: float = 30.0,  # noqa: ASYNC109
                         where: Any = None) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for at, event in self.events:
                    if at >= since and event["type"] == type_ and (where is None or where(event)):
                        return event
                self._changed.clear()
                await self._changed.wait()

    def reply_audio(self, response_id: str) -> bytes:
        return b"".join(base64.b64decode(e["delta"]) for e in self.of("response.output_audio.delta")
                        if e["response_id"] == response_id)


@asynccontextmanager
async def sdk_call(gateway_url: str, *, api_key: str = "sk-test", **query: str) -> AsyncIterator[SdkCaller]:
    client = sdk_client(gateway_url, api_key)
    async with client.realtime.connect(model="gpt-realtime", extra_query=query) as connection:
        caller = SdkCaller(connection)
        try:
            yield caller
        finally:
            await caller.close()
