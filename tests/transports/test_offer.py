"""What of a caller's offer aiortc gets to see: the sections used, the candidates kept."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.transports.ice import CandidatePolicy, remote_verdict
from gateway.transports.offer import bound_answer, prepare_offer

FINGERPRINT = "a=fingerprint:sha-256 2D:F0:FE:37:24:9A:64:E2:04:B0:76:0E:C5:B9:EF:02:6B:BC:14:3C"


def section(kind: str, mid: str, *extra: str, direction: str = "a=sendrecv") -> list[str]:
    fmt = {"audio": "96", "video": "97"}.get(kind, "webrtc-datachannel")
    profile = "UDP/DTLS/SCTP" if kind == "application" else "UDP/TLS/RTP/SAVPF"
    return [f"m={kind} 9 {profile} {fmt}", *([direction] if kind != "application" else []), f"a=mid:{mid}",
            *extra, FINGERPRINT, "a=setup:actpass"]


def offer(*sections: list[str], bundle: str | None = None) -> str:
    mids = [line[6:] for s in sections for line in s if line.startswith("a=mid:")]
    head = ["v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", f"a=group:BUNDLE {bundle or ' '.join(mids)}"]
    return "\r\n".join(head + [line for s in sections for line in s]) + "\r\n"


def candidate(address: str, port: int = 5000, *, transport: str = "udp", component: int = 1,
              kind: str = "host") -> str:
    return f"a=candidate:f{port} {component} {transport} 2130706431 {address} {port} typ {kind}"


def sections_of(sdp: str) -> list[list[str]]:
    out: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            out.append([line])
        elif out:
            out[-1].append(line)
    return out


def test_only_the_first_audio_section_and_the_data_channel_stay_active() -> None:
    sdp = offer(section("video", "0"), section("audio", "1"), section("audio", "2", direction="a=sendonly"),
                section("application", "3"), section("video", "4", direction=""))
    prepared = prepare_offer(sdp, CandidatePolicy())
    video, audio, second_audio, data, second_video = sections_of(prepared.sdp)
    assert "a=inactive" in video and "a=sendrecv" not in video
    assert "a=sendrecv" in audio and "a=inactive" not in audio
    assert "a=inactive" in second_audio and "a=sendonly" not in second_audio
    assert "a=inactive" not in data
    assert "a=inactive" in second_video
    assert prepared.inactive == ["video", "audio", "video"]
    assert all(sum(line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive") for line in s) <= 1
               for s in sections_of(prepared.sdp))


def test_an_audio_and_data_channel_offer_is_left_as_it_was() -> None:
    sdp = offer(section("audio", "0", candidate("192.0.2.2")), section("application", "1"))
    prepared = prepare_offer(sdp, CandidatePolicy())
    assert prepared.sdp == sdp
    assert (prepared.inactive, prepared.candidates_kept, sum(prepared.candidates_dropped.values())) == ([], 1, 0)


@pytest.mark.parametrize(("line", "reason"), [
    (candidate("203.0.113.9"), None),
    (candidate("192.0.2.2", kind="srflx"), None),
    (candidate("2001:db8::5"), None),
    (candidate("0.0.0.0"), "special_address"),
    (candidate("0.1.2.3"), "special_address"),
    (candidate("224.0.0.251"), "special_address"),
    (candidate("239.255.255.250"), "special_address"),
    (candidate("240.0.0.1"), "special_address"),
    (candidate("255.255.255.255"), "special_address"),
    (candidate("169.254.169.254"), "special_address"),  # link-local: also the cloud metadata service
    (candidate("ff02::1"), "special_address"),
    (candidate("fe80::1"), "special_address"),
    (candidate("::"), "special_address"),
    (candidate("::ffff:10.0.0.1"), "special_address"),
    (candidate("127.0.0.1"), "loopback"),
    (candidate("::1"), "loopback"),
    (candidate("10.1.2.3"), None),  # private ranges are allowed by default (LANs, VPNs)
    (candidate("fd00::2"), None),
    (candidate("4f0c7a5e-0d3b-4e3c-9d1a-2b5a6c7d8e9f.local"), "mdns"),
    (candidate("gateway.example.com"), "hostname"),
    (candidate("192.0.2.2", transport="tcp"), "not_udp"),
    (candidate("192.0.2.2", component=2), "component"),
    (candidate("192.0.2.2", kind="prflx"), "malformed"),
    (candidate("192.0.2.2", port=0), "malformed"),
    ("a=candidate:1 1 udp 1 192.0.2.2 99999 typ host", "malformed"),
    ("a=candidate:1 1 udp 1 192.0.2.2", "malformed"),
])
def test_the_default_policy_keeps_only_addresses_a_caller_can_be_reached_at(line: str, reason: str | None) -> None:
    assert remote_verdict(line, CandidatePolicy()) == reason


def test_private_loopback_and_mdns_candidates_follow_the_policy() -> None:
    strict = CandidatePolicy(allow_private=False)
    assert remote_verdict(candidate("10.1.2.3"), strict) == "private"
    assert remote_verdict(candidate("172.16.0.1"), strict) == "private"
    assert remote_verdict(candidate("192.168.1.1"), strict) == "private"
    assert remote_verdict(candidate("100.64.0.1"), strict) == "private"
    assert remote_verdict(candidate("fd00::2"), strict) == "private"
    assert remote_verdict(candidate("203.0.113.9"), strict) is None
    lenient = CandidatePolicy(allow_loopback=True, allow_mdns=True)
    assert remote_verdict(candidate("127.0.0.1"), lenient) is None
    assert remote_verdict(candidate("abc.local"), lenient) is None
    assert remote_verdict(candidate("224.0.0.1"), lenient) == "special_address"  # never


def test_at_most_max_remote_candidates_are_kept_per_offer() -> None:
    many = [candidate("203.0.113.9", port) for port in range(1000, 1900)]
    sdp = offer(section("audio", "0", *many, "a=end-of-candidates"), section("application", "1"), bundle="0 1")
    prepared = prepare_offer(sdp, CandidatePolicy(max_remote=16))
    kept = [line for line in prepared.sdp.splitlines() if line.startswith("a=candidate:")]
    assert kept == many[:16]
    assert prepared.candidates_kept == 16 and prepared.candidates_dropped == {"over_limit": 884}
    assert "a=end-of-candidates" in prepared.sdp


def test_candidates_of_sections_bundled_behind_the_first_are_dropped_and_not_counted() -> None:
    primary = [candidate("203.0.113.9", 1000), candidate("224.0.0.1", 1001)]
    sdp = offer(section("audio", "0", *primary), section("application", "1", candidate("203.0.113.9", 2000)),
                section("video", "2", candidate("203.0.113.9", 3000)), bundle="0 1")
    prepared = prepare_offer(sdp, CandidatePolicy(max_remote=2))
    audio, data, video = sections_of(prepared.sdp)
    assert [line for line in audio if line.startswith("a=candidate")] == primary[:1]
    assert not [line for line in data if line.startswith("a=candidate")]  # aiortc would use audio's transport
    assert [line for line in video if line.startswith("a=candidate")] == [candidate("203.0.113.9", 3000)]
    assert prepared.candidates_dropped == {"special_address": 1, "bundled": 1}


def test_a_section_left_without_candidates_waits_for_the_callers_checks() -> None:
    sdp = offer(section("audio", "0", candidate("224.0.0.1"), candidate("abc.local", 5001), "a=end-of-candidates"),
                section("application", "1", candidate("203.0.113.9"), "a=end-of-candidates"), bundle="0 1")
    audio, data = sections_of(prepare_offer(sdp, CandidatePolicy()).sdp)
    assert not [line for line in audio if line.startswith("a=candidate") or line == "a=end-of-candidates"]
    assert "a=end-of-candidates" in data  # bundled behind audio: aiortc ignores this section's candidates


def test_the_answer_promises_the_bounded_message_size() -> None:
    answer = "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
    assert bound_answer(answer, 81920) == answer.replace("262144", "81920")


def test_the_policy_is_built_from_the_configuration() -> None:
    from gateway.config import GatewayConfig, LimitsConfig, ServerConfig

    config = GatewayConfig(limits=LimitsConfig(max_remote_candidates=4),
                           server=ServerConfig(ice_addresses=("192.0.2.2", "10.0.0.0/8"),
                                               allow_private_candidates=False, allow_mdns_candidates=True))
    policy = CandidatePolicy.from_config(config)
    assert (policy.max_remote, policy.allow_private, policy.allow_loopback, policy.allow_mdns) == (
        4, False, False, True)
    assert policy.local_networks == (ipaddress.ip_network("192.0.2.2/32"), ipaddress.ip_network("10.0.0.0/8"))
