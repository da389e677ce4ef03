"""The impairment relay: SDP candidates rewritten; media packets really delayed and dropped, reproducibly."""

from __future__ import annotations

import asyncio
import time

import pytest

from qa.netem import ImpairmentRelay, NetworkImpairment


class Endpoint(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[tuple[float, bytes, tuple[str, int]]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((time.monotonic(), data, addr))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        assert self.transport is not None
        self.transport.close()

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", port))


async def endpoint() -> Endpoint:
    _, protocol = await asyncio.get_running_loop().create_datagram_endpoint(Endpoint, local_addr=("127.0.0.1", 0))
    return protocol


def candidate_port(sdp: str) -> int:
    [line] = [line for line in sdp.splitlines() if line.startswith("a=candidate:")]
    assert line.endswith("typ host") and " 127.0.0.1 " in line
    return int(line.split()[5])


async def relayed_pair(impairment: NetworkImpairment) -> tuple[ImpairmentRelay, Endpoint, Endpoint, int, int]:
    """A caller and a gateway endpoint talking through a relay; returns the ports each must send to."""
    caller, gateway = await endpoint(), await endpoint()
    relay = ImpairmentRelay(impairment)
    offer = await relay.rewrite_offer(
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\n"
        f"a=candidate:a 1 udp 2130706431 127.0.0.1 {caller.port} typ host\r\n"
        "a=candidate:b 1 udp 2130706431 fd00::2 5000 typ host\r\na=end-of-candidates\r\n")
    answer = await relay.rewrite_answer(
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 96\r\n"
        f"a=candidate:c 1 udp 2130706431 127.0.0.1 {gateway.port} typ host\r\n"
        "a=candidate:d 1 tcp 1518280447 127.0.0.1 9 typ host tcptype passive\r\na=end-of-candidates\r\n")
    return relay, caller, gateway, candidate_port(answer), candidate_port(offer)


async def settle(endpoint: Endpoint, count: int) -> None:
    """Wait for ``count`` packets, or until none has come for 0.3 s."""
    seen, quiet_since = 0, time.monotonic()
    while len(endpoint.received) < count and time.monotonic() - quiet_since < 0.3:
        if len(endpoint.received) > seen:
            seen, quiet_since = len(endpoint.received), time.monotonic()
        await asyncio.sleep(0.01)


async def test_loss_drops_media_only_and_the_same_seed_drops_the_same_packets() -> None:
    dropped_runs = []
    for _ in range(2):
        relay, caller, gateway, to_gateway, _ = await relayed_pair(NetworkImpairment(loss=0.3, seed=4))
        for i in range(400):
            caller.send(bytes([0x80, 96]) + i.to_bytes(2, "big"), to_gateway)  # RTP
            if i % 20 == 0:
                caller.send(bytes([0x17]) + i.to_bytes(2, "big"), to_gateway)  # DTLS: never dropped
                await asyncio.sleep(0.002)  # no more than the sockets' buffers hold
        await settle(gateway, count=420)
        media = {int.from_bytes(d[2:4], "big") for _, d, _ in gateway.received if d[0] == 0x80}
        assert sum(1 for _, d, _ in gateway.received if d[0] == 0x17) == 20
        assert 80 <= 400 - len(media) <= 160
        stats = relay.stats()["send"]
        assert stats["media_packets"] == 400 and stats["media_dropped"] == 400 - len(media)
        dropped_runs.append(set(range(400)) - media)
        relay.close()
        relay.close()  # safe twice
        caller.close()
        gateway.close()
    assert dropped_runs[0] == dropped_runs[1]


async def test_delay_and_jitter_hold_packets_back_in_the_chosen_direction() -> None:
    relay, caller, gateway, to_gateway, to_caller = await relayed_pair(
        NetworkImpairment(delay_ms=80, jitter_ms=20, direction="receive"))
    sent = time.monotonic()
    caller.send(b"\x80\x60up", to_gateway)
    await settle(gateway, count=1)
    assert gateway.received[0][0] - sent < 0.05  # "send" is not impaired
    relay_address = gateway.received[0][2]
    sent = time.monotonic()
    for i in range(10):
        gateway.send(bytes([0x80, 96, i]), relay_address[1])
    await settle(caller, count=10)
    delays = [at - sent for at, _, _ in caller.received]
    assert len(delays) == 10 and min(delays) >= 0.055 and max(delays) <= 0.2
    assert {addr[1] for _, _, addr in caller.received} == {to_gateway}  # from the socket it talks to
    relay.close()
    caller.close()
    gateway.close()
    assert to_caller != to_gateway


def test_impairments_are_validated() -> None:
    assert not NetworkImpairment().active
    with pytest.raises(ValueError, match="loss"):
        NetworkImpairment(loss=1.0)
    with pytest.raises(ValueError, match="direction"):
        NetworkImpairment(delay_ms=10, direction="sideways")
