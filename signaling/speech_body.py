"""The bodies of the speech endpoints: a multipart upload read within its limits, and the transcript formats.

An upload (``POST /v1/audio/transcriptions``) is refused from ``Content-Length`` before a byte is read
when it is larger than ``speech.max_upload_bytes`` (413 ``file_too_large``), and while it is
read as soon as the file part passes it; other fields are at most :data:`MAX_FIELD_BYTES`, and there
are at most :data:`MAX_PARTS` parts. The whole body must arrive within
``speech.upload_timeout_seconds`` (408). Nothing beyond these limits is buffered.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from signaling.errors import ApiError
from signaling.speech_service import TranscriptSegment

MAX_PARTS = 16
MAX_FIELD_BYTES = 4096
CHUNK_BYTES = 64 * 1024


@dataclass
class Upload:
    """The parts of a transcription request: the file, and each other field's values in order."""

    file: bytes | None = None
    fields: dict[str, list[str]] = field(default_factory=dict)

    def value(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[-1] if values else None


async def read_upload(request: web.Request, *, max_file_bytes: int, within: float) -> Upload:
    if request.content_type != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type",
                       f"Content-Type must be multipart/form-data, not {request.content_type!r}")
    max_total = max_file_bytes + MAX_PARTS * MAX_FIELD_BYTES
    if request.content_length is not None and request.content_length > max_total:
        raise ApiError(413, "file_too_large", f"the file is larger than {max_file_bytes} bytes")
    try:
        async with asyncio.timeout(within):
            return await _read_parts(request, max_file_bytes)
    except TimeoutError:
        raise ApiError(408, "request_timeout", f"the upload did not arrive within {within:g} s") from None
    except (ValueError, AssertionError, RuntimeError, HttpProcessingError) as exc:
        raise ApiError(400, "invalid_multipart", f"the multipart body is malformed: {exc}") from exc


async def _read_parts(request: web.Request, max_file_bytes: int) -> Upload:
    upload = Upload()
    reader = await request.multipart()
    count = 0
    while (part := await reader.next()) is not None:
        count += 1
        if count > MAX_PARTS:
            raise ApiError(400, "too_many_parts", f"a transcription request has at most {MAX_PARTS} parts")
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "invalid_multipart", "nested multipart bodies are not supported")
        if part.name == "file":
            upload.file = await _read_part(part, max_file_bytes, "file_too_large")
        elif part.name:
            data = await _read_part(part, MAX_FIELD_BYTES, "field_too_large")
            try:
                upload.fields.setdefault(part.name, []).append(data.decode("utf-8"))
            except UnicodeDecodeError:
                raise ApiError(400, "invalid_field", f"the field {part.name!r} is not UTF-8") from None
    return upload


async def _read_part(part: BodyPartReader, max_bytes: int, code: str) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(CHUNK_BYTES):
        size += len(chunk)
        if size > max_bytes:
            raise ApiError(413, code, f"the part {part.name!r} is larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(segments: list[TranscriptSegment]) -> str:
    cues = [f"{i}\n{_timestamp(s.start, ',')} --> {_timestamp(s.end, ',')}\n{s.text}\n"
            for i, s in enumerate(segments, 1)]
    return "\n".join(cues)


def vtt(segments: list[TranscriptSegment]) -> str:
    cues = [f"{_timestamp(s.start, '.')} --> {_timestamp(s.end, '.')}\n{s.text}\n" for s in segments]
    return "WEBVTT\n\n" + "\n".join(cues)
