"""The gateway's own candidates: gathered only on ``server.ice_addresses``, for the answer being made."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from aioice import ice as aioice_ice

from gateway.config import ConfigError, LimitsConfig, ServerConfig
from gateway.transports import ice

V4 = (ipaddress.ip_network("192.0.2.0/24"),)


def test_the_installed_aioice_has_what_the_local_filter_relies_on() -> None:
    assert ice.missing_internals() == []
    assert ice.install_local_filter()
    assert ice.install_local_filter()  # once is enough; twice is harmless
    assert ice.local_filter_installed()


async def test_host_addresses_are_filtered_only_while_gathering_for_an_answer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ice.install_local_filter()
    monkeypatch.setattr(ice, "_aioice_host_addresses", lambda v4, v6: ["192.0.2.2", "fd00::2", "10.9.8.7"])
    assert aioice_ice.get_host_addresses(True, True) == ["192.0.2.2", "fd00::2", "10.9.8.7"]

    async def in_a_task() -> list[str]:
        await asyncio.sleep(0)
        return aioice_ice.get_host_addresses(True, True)

    with ice.gathering_on(V4):
        assert aioice_ice.get_host_addresses(True, True) == ["192.0.2.2"]
        assert await asyncio.ensure_future(in_a_task()) == ["192.0.2.2"]  # aiortc gathers in tasks it starts
    assert aioice_ice.get_host_addresses(True, True) == ["192.0.2.2", "fd00::2", "10.9.8.7"]
    with ice.gathering_on(()):
        assert len(aioice_ice.get_host_addresses(True, True)) == 3


async def test_a_connection_gathering_elsewhere_is_not_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    ice.install_local_filter()
    monkeypatch.setattr(ice, "_aioice_host_addresses", lambda v4, v6: ["192.0.2.2", "fd00::2"])
    seen: list[list[str]] = []

    async def gather() -> None:
        seen.append(aioice_ice.get_host_addresses(True, True))

    other = asyncio.ensure_future(gather())  # created outside the block: another call, or a client
    with ice.gathering_on(V4):
        await other
    assert seen == [["192.0.2.2", "fd00::2"]]


def test_the_answer_text_fallback_removes_other_host_candidates() -> None:
    answer = ("m=audio 9 UDP/TLS/RTP/SAVPF 96\r\n"
              "a=candidate:1 1 udp 2130706431 192.0.2.2 4000 typ host\r\n"
              "a=candidate:2 1 udp 2130706431 fd00::2 4001 typ host\r\n"
              "a=candidate:3 1 udp 1694498815 198.51.100.4 4002 typ srflx raddr 192.0.2.2 rport 4000\r\n")
    filtered = ice.filter_local_candidates(answer, V4)
    assert "fd00::2" not in filtered
    assert "192.0.2.2 4000 typ host" in filtered and "typ srflx" in filtered
    assert ice.filter_local_candidates(answer, ()) == answer


@pytest.mark.parametrize(("make", "key"), [
    (lambda: ServerConfig(ice_addresses=("not-an-address",)), "server.ice_addresses"),
    (lambda: ServerConfig(ice_addresses=("10.0.0.0/33",)), "server.ice_addresses"),
    (lambda: LimitsConfig(max_remote_candidates=0), "limits.max_remote_candidates"),
    (lambda: LimitsConfig(max_remote_candidates=1000), "limits.max_remote_candidates"),
    (lambda: LimitsConfig(max_audio_lead_seconds=0), "limits.max_audio_lead_seconds"),
    (lambda: LimitsConfig(max_dropped_audio_seconds=0.5), "limits.max_dropped_audio_seconds"),
])
def test_bad_values_are_refused_naming_the_key(make: object, key: str) -> None:
    with pytest.raises(ConfigError) as raised:
        make()  # type: ignore[operator]
    assert raised.value.key == key


def test_the_defaults() -> None:
    server, limits = ServerConfig(), LimitsConfig()
    assert (server.ice_addresses, server.allow_private_candidates, server.allow_loopback_candidates,
            server.allow_mdns_candidates) == ((), True, False, False)
    assert (limits.max_remote_candidates, limits.max_audio_lead_seconds, limits.max_dropped_audio_seconds) == (
        16, 1.0, 5.0)
    assert ServerConfig(ice_addresses=("192.0.2.2", "2001:db8::/32")).ice_addresses == ("192.0.2.2", "2001:db8::/32")
