"""What of a caller's offer the peer connection gets to see, and what the answer promises.

**One audio section and the data channel.** aiortc answers every audio and video
section it is offered ``recvonly``, and decodes what arrives on it into a queue only a
reader empties: a caller that added a camera cost the gateway 14 MB/s of decoded frames
per video section (measured: 640×480 at 30 fps, +149 MB in 10 s) and a decoder
thread, and a second audio section was decoded and fed into the same conversation as
the first. The gateway listens to one voice, so :func:`prepare_offer` marks every
media section but the first ``m=audio`` and the first ``m=application`` (the data
channel) ``a=inactive`` before aiortc sees the offer: aiortc then answers them
``a=inactive``, creates no track and starts no receiver for them, and drops any RTP
that arrives on them anyway. The call goes on with its audio and events: a client that
adds a camera keeps working, it just sends no video (JSEP: a sender answered inactive
sends nothing). Rejecting with port 0 instead would take the section out of the BUNDLE
group and make clients such as aiortc start a separate ICE transport for it.

**The caller's candidates**: at most ``max_remote`` of those
:func:`gateway.transports.ice.remote_verdict` keeps, counted over the offer in its
order. The candidates of a section bundled behind another are dropped too: aiortc uses
only those of the group's first section. A section left without candidates loses its
``a=end-of-candidates``: aioice fails at once with no candidate to check, and without it
waits for the caller's own checks, from which it learns the caller's address.

**max-message-size.** aiortc's answer promises the caller it may send data-channel
messages of 256 KiB; :func:`bound_answer` promises ``max_message_bytes`` instead
(``limits.max_event_bytes`` + 16 KiB), which browsers respect and
:mod:`gateway.transports.sctp` enforces.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from gateway.transports.ice import CandidatePolicy, remote_verdict

_DIRECTIONS = ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive")
_MAX_MESSAGE_SIZE = re.compile(r"^a=max-message-size:\d+", re.MULTILINE)


@dataclass
class PreparedOffer:
    """The offer as aiortc gets it, and what was changed in it."""

    sdp: str
    inactive: list[str] = field(default_factory=list)  # "video", "audio" (a second one) … by section
    candidates_kept: int = 0
    candidates_dropped: Counter[str] = field(default_factory=Counter)  # by reason


@dataclass
class _Section:
    lines: list[str]

    @property
    def kind(self) -> str:
        return self.lines[0][2:].split(" ", 1)[0]

    @property
    def mid(self) -> str | None:
        return next((line[6:].strip() for line in self.lines if line.startswith("a=mid:")), None)


def prepare_offer(sdp: str, policy: CandidatePolicy) -> PreparedOffer:
    """The offer with the sections the gateway does not use made inactive and the candidates filtered."""
    session, sections = _split(sdp)
    prepared = PreparedOffer(sdp="")
    used: set[str] = set()
    for section in sections:
        if section.kind in ("audio", "application") and section.kind not in used:
            used.add(section.kind)
        elif section.kind in ("audio", "video"):
            section.lines = _inactive(section.lines)
            prepared.inactive.append(section.kind)
    secondary = _bundled_behind_first(session, sections)
    for section in sections:
        section.lines = _filter_candidates(section.lines, policy, prepared, drop_all=section.mid in secondary)
    lines = session + [line for section in sections for line in section.lines]
    prepared.sdp = "\r\n".join(lines) + "\r\n"
    return prepared


def bound_answer(answer: str, max_message_bytes: int) -> str:
    """The answer promising data-channel messages of at most ``max_message_bytes``."""
    return _MAX_MESSAGE_SIZE.sub(f"a=max-message-size:{max_message_bytes}", answer)


def _split(sdp: str) -> tuple[list[str], list[_Section]]:
    session: list[str] = []
    sections: list[_Section] = []
    for line in (line.strip() for line in sdp.splitlines()):
        if not line:
            continue
        if line.startswith("m="):
            sections.append(_Section([line]))
        elif sections:
            sections[-1].lines.append(line)
        else:
            session.append(line)
    return session, sections


def _inactive(lines: list[str]) -> list[str]:
    """The section with its direction replaced by ``a=inactive``."""
    return [lines[0], "a=inactive", *(line for line in lines[1:] if line not in _DIRECTIONS)]


def _bundled_behind_first(session: list[str], sections: list[_Section]) -> set[str]:
    """The mids of sections whose transport aiortc replaces by their BUNDLE group's first section's."""
    mids = {section.mid for section in sections}
    behind: set[str] = set()
    for line in session:
        if line.startswith("a=group:BUNDLE"):
            group = [mid for mid in line[len("a=group:BUNDLE"):].split() if mid in mids]
            behind.update(group[1:])
    return behind


def _filter_candidates(lines: list[str], policy: CandidatePolicy, prepared: PreparedOffer, *,
                       drop_all: bool) -> list[str]:
    kept, candidates = [], 0
    for line in lines:
        if not line.startswith("a=candidate:"):
            kept.append(line)
            continue
        reason = "bundled" if drop_all else remote_verdict(line, policy)
        if reason is None and prepared.candidates_kept >= policy.max_remote:
            reason = "over_limit"
        if reason is None:
            prepared.candidates_kept += 1
            candidates += 1
            kept.append(line)
        else:
            prepared.candidates_dropped[reason] += 1
    if candidates == 0 and not drop_all:
        # None left: aioice would give up at once. Without end-of-candidates it waits for the caller's checks
        # and learns its address from them (peer-reflexive), until limits.ice_timeout_seconds.
        kept = [line for line in kept if line != "a=end-of-candidates"]
    return kept
