"""Hypothesis strategies for hostile input: malformed SDP offers and data-channel messages.

Used by the property tests here and, at much higher example counts, by
``benchmarks/fuzz.py``.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

#: A real aiortc offer (audio + data channel), the seed the mutations start from.
OFFER = (
    "v=0\r\no=- 4004661641 4004661641 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"
    "a=msid-semantic:WMS *\r\nm=audio 52175 UDP/TLS/RTP/SAVPF 96 9 0 8\r\nc=IN IP4 127.0.0.1\r\na=sendrecv\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=mid:0\r\na=msid:63e5d7b8-d26d-42ae-aef5-50763b3b845a f4c0677b-7a04-41f0-b60b-672cadd74028\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\na=rtcp-mux\r\na=ssrc:3433854936 cname:a5307d28-e5b2-413b-b729-82f48c4d4b70\r\n"
    "a=rtpmap:96 opus/48000/2\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=candidate:f957a2332b1715da3b0ef8ba684454eb 1 udp 2130706431 127.0.0.1 52175 typ host\r\n"
    "a=end-of-candidates\r\na=ice-ufrag:6FO8\r\na=ice-pwd:7Kdgs6AojNHvceU9oP6DK5\r\n"
    "a=fingerprint:sha-256 12:E1:21:55:AD:C1:A0:AB:0A:63:D1:E2:37:38:23:7A:35:F1:1D:07:D1:F9:7F:EC:60:2F:F4:51:FC"
    ":63:63:A9\r\na=setup:actpass\r\nm=application 39397 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 127.0.0.1\r\n"
    "a=mid:1\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
    "a=candidate:f957a2332b1715da3b0ef8ba684454eb 1 udp 2130706431 127.0.0.1 39397 typ host\r\n"
    "a=end-of-candidates\r\na=ice-ufrag:6FO8\r\na=ice-pwd:7Kdgs6AojNHvceU9oP6DK5\r\n"
    "a=fingerprint:sha-256 12:E1:21:55:AD:C1:A0:AB:0A:63:D1:E2:37:38:23:7A:35:F1:1D:07:D1:F9:7F:EC:60:2F:F4:51:FC"
    ":63:63:A9\r\na=setup:actpass\r\n"
)

#: What the HTTP API may answer to an offer, by status (docs/protocol.md).
SDP_ERRORS = {
    400: {"empty_body", "invalid_sdp", "no_audio", "missing_fingerprint", "not_an_offer", "too_many_media_sections"},
    413: {"sdp_too_large"},
}

#: Numbers that break naive parsers: out of range, negative, huge, not ASCII digits.
AWKWARD_NUMBERS = ("0", "-1", "65535", "65536", "128", "255", "4294967296", "99999999999999999999999", "1e9",
                   "0x10", "", "NaN", "²", "①", "٣", "1" * 5000)
#: Lines that SDP parsers find interesting.
AWKWARD_LINES = (
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "m=video 9 UDP/TLS/RTP/SAVPF 96", "m=application 9 UDP/DTLS/SCTP x",
    "a=setup:active", "a=setup:passive", "a=fingerprint:sha-256 00", "a=fingerprint:md5 ZZ", "a=rtpmap:96",
    "a=rtpmap:96 opus/abc/2", "a=rtpmap:x opus/48000/2", "a=fmtp:96", "a=ssrc:x cname:y", "a=ssrc-group:FID",
    "a=candidate:1 1 udp 1 999.1.1.1 1 typ host", "a=candidate:", "a=extmap:99999 x", "a=mid:", "a=group:BUNDLE",
    "a=rtcp:abc", "a=sctp-port:abc", "a=max-message-size:-5", "c=IN IP6 ::::", "c=IN IP4", "o=-", "t=a b", "v=1",
    "a=ice-ufrag:", "a=ice-pwd:", "a=msid:", "b=AS:-1", "a=\x00", "m=", "=", "a=" + "x" * 3000,
)

_MUTATIONS = ("delete", "duplicate", "insert", "awkward", "number", "truncate", "swap")


def _mutate(offer: str, mutations: list[tuple[str, int, int, str, str]]) -> str:
    lines = offer.split("\r\n")
    for op, i, j, text, number in mutations:
        if not lines:
            lines = [""]
        i %= len(lines)
        j %= len(lines)
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines[i:i] = [lines[i]] * (1 + j % 50)
        elif op == "insert":
            lines.insert(i, text)
        elif op == "awkward":
            lines.insert(i, AWKWARD_LINES[j % len(AWKWARD_LINES)])
        elif op == "number":
            words = lines[i].split(" ")
            words[j % len(words)] = number
            lines[i] = " ".join(words)
        elif op == "truncate":
            lines[i] = lines[i][: j % (len(lines[i]) + 1)]
            del lines[i + 1 :]
        else:  # swap
            lines[i], lines[j] = lines[j], lines[i]
    return "\r\n".join(lines)


#: Mutations that keep every line well-formed, so that the offer reaches the WebRTC stack's own parser.
_STRUCTURAL = ("delete", "duplicate", "awkward", "number", "swap")


def mutated_offers(operations: tuple[str, ...] = _MUTATIONS) -> st.SearchStrategy[str]:
    mutation = st.tuples(st.sampled_from(operations), st.integers(0, 10_000), st.integers(0, 10_000),
                         st.text(max_size=60), st.sampled_from(AWKWARD_NUMBERS))
    return st.lists(mutation, min_size=1, max_size=8).map(lambda mutations: _mutate(OFFER, mutations))


def sdp_bodies() -> st.SearchStrategy[bytes]:
    """Request bodies for ``POST /v1/realtime/calls``: mostly broken offers, some noise."""
    offers = mutated_offers()
    return st.one_of(
        mutated_offers(_STRUCTURAL).map(lambda text: text.encode("utf-8", "surrogatepass")),
        offers.map(lambda text: text.encode("utf-8", "surrogatepass")),
        offers.map(lambda text: text.encode("utf-8", "surrogatepass")[:-7] + b"\xff\xfe\xc0\x80\n"),
        st.binary(max_size=2048),
        st.text(max_size=512).map(lambda text: ("v=0\r\n" + text).encode("utf-8", "surrogatepass")),
    )


JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)

CLIENT_EVENT_TYPES = (
    "session.update", "input_audio_buffer.clear", "input_audio_buffer.commit", "input_audio_buffer.append",
    "conversation.item.create", "conversation.item.retrieve", "conversation.item.delete",
    "conversation.item.truncate", "response.create", "response.cancel", "output_audio_buffer.clear",
    "gateway.response.text.delta", "gateway.response.text.done", "", "session.created", "error",
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy | JSON_VALUES


def _turn_detection() -> st.SearchStrategy[Any]:
    number = st.integers(-10**6, 10**6) | st.floats() | JSON_VALUES
    return _maybe(st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["server_vad", "semantic_vad", "none", ""]) | JSON_VALUES,
        "threshold": number, "prefix_padding_ms": number, "silence_duration_ms": number,
        "create_response": JSON_VALUES, "interrupt_response": JSON_VALUES,
    }))


def sessions() -> st.SearchStrategy[Any]:
    """``session.update`` payloads: the known keys with good and bad values, and anything else."""
    voice = st.sampled_from(["tone", "joe", "", "nobody"]) | JSON_VALUES
    return _maybe(st.fixed_dictionaries({}, optional={
        "type": st.just("realtime") | JSON_VALUES,
        "instructions": st.text(max_size=100) | JSON_VALUES,
        "voice": voice, "agent": st.sampled_from(["echo", "webhook", "openai", ""]) | JSON_VALUES,
        "turn_detection": _turn_detection() | st.none(),
        "audio": _maybe(st.fixed_dictionaries({}, optional={
            "input": _maybe(st.fixed_dictionaries({}, optional={"turn_detection": _turn_detection()})),
            "output": _maybe(st.fixed_dictionaries({}, optional={"voice": voice})),
        })),
    }))


def _items() -> st.SearchStrategy[Any]:
    part = _maybe(st.fixed_dictionaries({"type": st.sampled_from(["input_text", "output_text", "text", "audio"])},
                                        optional={"text": st.text(max_size=40) | JSON_VALUES}))
    return _maybe(st.fixed_dictionaries({}, optional={
        "type": st.sampled_from(["message", "function_call"]) | JSON_VALUES,
        "role": st.sampled_from(["user", "assistant", "system", "tool"]) | JSON_VALUES,
        "id": st.text(max_size=20) | JSON_VALUES, "content": st.lists(part, max_size=3) | JSON_VALUES,
    }))


def client_events() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"type": st.sampled_from(CLIENT_EVENT_TYPES) | JSON_VALUES},
        optional={
            "event_id": st.text(max_size=20) | JSON_VALUES, "session": sessions(), "item": _items(),
            "item_id": JSON_VALUES, "response": _maybe(st.fixed_dictionaries({}, optional={
                "text_stream": JSON_VALUES, "instructions": JSON_VALUES})),
            "delta": st.text(max_size=80) | JSON_VALUES, "response_id": JSON_VALUES,
        },
    )


#: Messages that broke or could break naive JSON handling.
AWKWARD_MESSAGES = (
    '{"type": "session.update", "n": ' + "1" * 5000 + "}", "[" * 50_000, '{"a":' * 20_000, "1" * 5000, "",
    '{"type": "session.update", "session": {"instructions": "\\ud800"}}', "\x00", "null", "NaN", "{}",
    '{"type": 7}', '{"type": "session.update", "session": {"turn_detection": {"threshold": 1e400}}}',
)


def client_messages() -> st.SearchStrategy[str | bytes]:
    """Data-channel messages: events with hostile fields, JSON that is no event, and non-JSON."""
    return st.one_of(
        client_events().map(json.dumps),
        JSON_VALUES.map(json.dumps),
        st.text(max_size=200),
        st.binary(max_size=200),
        st.sampled_from(AWKWARD_MESSAGES),
    )


#: Valid messages that make a session talk. Fuzzed sequences mix them in (:func:`call_messages`), so that
#: replies run — and their events are checked — in about one example in five (one in forty without them).
REPLY_MESSAGES = tuple(json.dumps(event) for event in (
    {"type": "response.create"},
    {"type": "conversation.item.create", "item": {"type": "message", "role": "user",
                                                  "content": [{"type": "input_text", "text": "Hello there"}]}},
    {"type": "response.create", "response": {"text_stream": True}},
    {"type": "gateway.response.text.delta", "delta": "A few words. "},
    {"type": "gateway.response.text.done"},
    {"type": "response.cancel"},
    {"type": "output_audio_buffer.clear"},
))


def call_messages() -> st.SearchStrategy[str | bytes]:
    """What a fuzzed call receives: hostile messages (:func:`client_messages`) and ones that start replies."""
    return st.one_of(client_messages(), st.sampled_from(REPLY_MESSAGES))


#: Error codes a client event, or the reply it started, may get (docs/protocol.md, "error" and the
#: client-streamed text and agent sections).
EVENT_ERRORS = {
    "invalid_json", "invalid_event", "missing_type", "unknown_event", "event_too_large", "rate_limited",
    "invalid_value", "invalid_item", "input_audio_buffer_commit_empty", "response_cancel_not_active",
    "no_active_output", "conversation_already_has_active_response", "item_not_found", "response_not_found",
    "response_text_done", "response_text_overflow", "client_text_timeout", "asr_failed", "tts_failed",
    "agent_http_error", "agent_timeout", "agent_unreachable", "agent_connection_failed", "agent_bad_response",
    "agent_upstream_error", "unknown_call_id", "function_call_cancelled", "function_call_already_answered",
}
