"""gateway.transports.sctp: what a peer may make the gateway reassemble, chunk by chunk."""

from __future__ import annotations

from struct import pack
from types import SimpleNamespace

import pytest
from aiortc import rtcpeerconnection
from aiortc.rtcsctptransport import SCTP_DATA_FIRST_FRAG, SCTP_DATA_LAST_FRAG, DataChunk

from gateway.transports import sctp

WEBRTC_STRING, WEBRTC_DCEP = 51, 50
LIMIT = sctp.InboundLimit(max_message_bytes=80 * 1024)


class Probe(sctp.BoundedSctpTransport):
    """The bounded transport on a stand-in DTLS transport: chunks go in, delivered messages are recorded."""

    def __init__(self) -> None:
        super().__init__(SimpleNamespace(state="new"))  # type: ignore[arg-type]  # aiortc checks it is not closed
        self._last_received_tsn = 99  # as if the association were established (INIT carried TSN 100)
        self.delivered: list[int] = []
        self.violations: list[tuple[str, str]] = []
        self.tsn = 100

    def limit(self) -> Probe:
        self.limit_inbound(LIMIT, lambda reason, detail: self.violations.append((reason, detail)))
        return self

    async def _data_channel_receive(self, stream_id: int, pp_id: int, data: bytes) -> None:
        self.delivered.append(len(data))
        await super()._data_channel_receive(stream_id, pp_id, data)

    async def send(self, size: int, *, fragment: int = 1200, stream: int = 1, seq: int = 0,
                   lose_first: bool = False) -> DataChunk | None:
        """One message of ``size`` bytes in fragments, as a peer would send it; with ``lose_first`` its first
        fragment is held back (a lost packet) and returned, to be delivered later."""
        pieces = [b"x" * min(fragment, size - offset) for offset in range(0, size, fragment)]
        lost = None
        for i, piece in enumerate(pieces):
            flags = (SCTP_DATA_FIRST_FRAG if i == 0 else 0) | (SCTP_DATA_LAST_FRAG if i == len(pieces) - 1 else 0)
            chunk = DataChunk(flags=flags, body=pack("!LHHL", self.tsn, stream, seq, WEBRTC_STRING) + piece)
            self.tsn += 1
            if lose_first and i == 0:
                lost = chunk
            else:
                await self._receive_data_chunk(chunk)
        return lost


def test_the_installed_aiortc_has_what_the_extension_relies_on() -> None:
    assert sctp.missing_internals() == []
    assert sctp.install()
    assert rtcpeerconnection.RTCSctpTransport is sctp.BoundedSctpTransport  # type: ignore[attr-defined]


async def test_without_a_limit_it_is_aiortcs_transport() -> None:
    probe = Probe()
    await probe.send(300_000)
    assert probe.delivered == [300_000] and probe.violations == []


async def test_messages_up_to_the_limit_are_delivered() -> None:
    probe = Probe().limit()
    for seq, size in enumerate((10, 70_000, LIMIT.max_message_bytes, 1)):
        await probe.send(size, seq=seq)
    assert probe.delivered == [10, 70_000, LIMIT.max_message_bytes, 1] and probe.violations == []


async def test_a_message_is_given_up_as_soon_as_it_outgrows_the_limit() -> None:
    probe = Probe().limit()
    await probe.send(2_000_000)
    assert [reason for reason, _ in probe.violations] == ["message_too_large"]
    assert probe.violation == "message_too_large" and probe.delivered == []
    # given up at the first fragment beyond the limit: the 1,600 fragments after it were dropped unread
    held = sum(len(chunk.user_data) for chunk in probe._inbound_streams[1].reassembly)
    assert LIMIT.max_message_bytes < held <= LIMIT.max_message_bytes + 1200


async def test_large_events_held_behind_a_lost_packet_are_delivered_once_it_arrives() -> None:
    probe = Probe().limit()
    lost = await probe.send(1000, seq=0, lose_first=True)
    for seq in (1, 2, 3):  # three 64 KiB events (session.update with tools) queue behind the gap: 210 kB
        await probe.send(70_000, seq=seq)
    assert probe.delivered == [] and probe.violations == []
    assert lost is not None
    await probe._receive_data_chunk(lost)  # the retransmission
    assert probe.delivered == [1000, 70_000, 70_000, 70_000] and probe.violations == []


async def test_what_waits_behind_a_gap_is_bounded() -> None:
    probe = Probe().limit()
    await probe.send(1000, seq=0, lose_first=True)
    for seq in range(1, 6):  # 350 kB behind the gap: more than four of the largest messages
        await probe.send(70_000, seq=seq)
    assert [reason for reason, _ in probe.violations] == ["message_too_large"]
    assert "waiting for reassembly" in probe.violations[0][1]


async def test_tiny_fragments_are_bounded_by_their_number() -> None:
    probe = Probe().limit()
    await probe.send(LIMIT.max_pending_chunks + 10, fragment=1)
    assert [reason for reason, _ in probe.violations] == ["message_too_large"]
    assert "fragments" in probe.violations[0][1]


async def test_a_single_chunk_over_the_limit_is_not_delivered() -> None:
    probe = Probe().limit()
    await probe.send(LIMIT.max_message_bytes + 1, fragment=LIMIT.max_message_bytes + 1)
    assert probe.delivered == [] and probe.violations[0][0] == "message_too_large"


async def test_data_on_too_many_streams_gives_the_association_up() -> None:
    probe = Probe().limit()
    for stream in range(LIMIT.max_streams + 1):
        await probe.send(10, stream=stream)
    assert [reason for reason, _ in probe.violations] == ["data_channel_error"]


async def test_a_message_aiortc_fails_on_ends_the_association_cleanly() -> None:
    probe = Probe().limit()
    label = b"\xff\xfe"  # a data channel OPEN whose label is not UTF-8: aiortc's decode raises
    await probe._receive(1, WEBRTC_DCEP, pack("!BBHLHH", 0x03, 0, 0, 0, len(label), 0) + label)
    assert [reason for reason, _ in probe.violations] == ["data_channel_error"]
    unlimited = Probe()
    with pytest.raises(UnicodeDecodeError):  # what ended aiortc's DTLS receive loop before
        await unlimited._receive(1, WEBRTC_DCEP, pack("!BBHLHH", 0x03, 0, 0, 0, len(label), 0) + label)


def test_the_limit_is_validated() -> None:
    with pytest.raises(ValueError):
        sctp.InboundLimit(max_message_bytes=10)
    assert sctp.InboundLimit(max_message_bytes=80 * 1024).max_pending_chunks == 640
