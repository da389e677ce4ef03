"""Checks an SDP offer before any peer connection is created for it.

Audio, video and one application (data channel) section are accepted; which of them a
call uses is the WebRTC transport's decision (gateway/transports/offer.py: the first audio
section and the data channel; video and further audio sections are answered inactive).
"""

from __future__ import annotations

import re

from signaling.errors import ApiError

MAX_MEDIA_SECTIONS = 8
MEDIA_KINDS = ("audio", "video", "application")
_SETUP = re.compile(r"^a=setup:(\w+)", re.MULTILINE)


def _invalid(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def _is_number(text: str) -> bool:
    """A short run of ASCII digits: ``str.isdigit`` also accepts "²" and "①", which ``int`` refuses, and
    ``int`` refuses more than 4,300 digits."""
    return len(text) <= 10 and text.isascii() and text.isdigit()


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
    kinds = [line[2:].split(" ", 1)[0] for line in media]
    if any(kind not in MEDIA_KINDS for kind in kinds):
        raise _invalid("invalid_sdp", "only audio, video and application (data channel) media sections are accepted")
    if kinds.count("application") > 1:  # aiortc answers a second one with the first one's mid
        raise _invalid("invalid_sdp", "at most one application (data channel) media section is accepted")
    if not any(line.startswith("a=fingerprint:") for line in lines):
        raise _invalid("missing_fingerprint", "the SDP offer has no DTLS fingerprint (a=fingerprint)")
    if not _fingerprints_cover_media(lines):
        raise _invalid("missing_fingerprint", "every media section needs a DTLS fingerprint (a=fingerprint)")
    if not _media_ids_valid(lines):
        raise _invalid("invalid_sdp", "every media section needs one a=mid, each different, and a=group:BUNDLE "
                       "may name only those (RFC 8843)")
    setups = set(_SETUP.findall("\n".join(lines)))
    if setups and "actpass" not in setups:
        raise _invalid("not_an_offer", "this SDP is an answer (a=setup is not actpass); POST an offer")
    return "\r\n".join(lines) + "\r\n"


def _sections(lines: list[str]) -> tuple[list[str], list[list[str]]]:
    """The session-level lines, and the attribute lines of each m-section."""
    session: list[str] = []
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([])
        elif sections:
            sections[-1].append(line)
        else:
            session.append(line)
    return session, sections


def _fingerprints_cover_media(lines: list[str]) -> bool:
    """A session-level fingerprint, or one in every m-section (aiortc fails later without it)."""
    session, sections = _sections(lines)
    has_fingerprint = [any(line.startswith("a=fingerprint:") for line in part) for part in (session, *sections)]
    return has_fingerprint[0] or all(has_fingerprint[1:])


def _media_ids_valid(lines: list[str]) -> bool:
    """One non-empty, distinct ``a=mid`` per m-section, and BUNDLE naming only those: aiortc's connect task
    fails otherwise, leaving a call that never connects (found by fuzzing)."""
    _, sections = _sections(lines)
    section_mids = [[line[6:].strip() for line in section if line.startswith("a=mid:")] for section in sections]
    mids = [found[0] for found in section_mids if len(found) == 1 and found[0]]
    bundled = [mid for line in lines if line.startswith("a=group:BUNDLE") for mid in line[14:].split()]
    return len(mids) == len(sections) and len(set(mids)) == len(mids) and set(bundled) <= set(mids)
