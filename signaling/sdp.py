"""Checks an SDP offer before any peer connection is created for it."""

from __future__ import annotations

import re

from signaling.errors import ApiError

MAX_MEDIA_SECTIONS = 8
_SETUP = re.compile(r"^a=setup:(\w+)", re.MULTILINE)


def _invalid(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def _is_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts "²" and "①", which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def decode_sdp(body: bytes, *, max_bytes: int) -> str:
    """The body as SDP text, or an ApiError saying what is wrong with it."""
    if len(body) > max_bytes:
        raise ApiError(413, "sdp_too_large", f"the SDP offer is larger than {max_bytes} bytes")
    if not body.strip():
        raise _invalid("empty_body", "the request body is empty; send an SDP offer")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _invalid("invalid_sdp", "the SDP offer is not valid UTF-8") from exc
    return validate_offer(text)


def validate_offer(text: str) -> str:
    if "\x00" in text:
        raise _invalid("invalid_sdp", "the SDP offer contains NUL characters")
    lines = [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
    if not lines or lines[0] != "v=0":
        raise _invalid("invalid_sdp", "an SDP offer must start with 'v=0'")
    if any(len(line) < 2 or line[1] != "=" for line in lines):
        raise _invalid("invalid_sdp", "every SDP line must look like 'x=value'")
    media = [line for line in lines if line.startswith("m=")]
    if len(media) > MAX_MEDIA_SECTIONS:
        raise _invalid("too_many_media_sections", f"at most {MAX_MEDIA_SECTIONS} media sections are accepted")
    audio = [line for line in media if line.startswith("m=audio ")]
    if not audio:
        raise _invalid("no_audio", "the SDP offer has no audio media section (m=audio)")
    for line in media:
        parts = line[2:].split()
        if len(parts) < 3 or not _is_number(parts[1]) or int(parts[1]) > 65535:
            raise _invalid("invalid_sdp", f"malformed media line {line[:80]!r}")
        if parts[0] in ("audio", "video") and any(not _is_number(fmt) or int(fmt) > 127 for fmt in parts[3:]):
            raise _invalid("invalid_sdp", f"bad payload types in {line[:80]!r}")
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise _invalid("missing_fingerprint", "the SDP offer has no DTLS fingerprint (a=fingerprint)")
    setups = set(_SETUP.findall("\n".join(lines)))
    if setups and "actpass" not in setups:
        raise _invalid("not_an_offer", "this SDP is an answer (a=setup is not actpass); POST an offer")
    return "\r\n".join(lines) + "\r\n"
