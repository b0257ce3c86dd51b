from __future__ import annotations

import ipaddress

from gunicorn_prefork.worker import peer_trust


def _allowed(ip: str, allow_list: list[str], networks: list[object]) -> bool:
    calls.append(ip)
    if "*" in allow_list:
        return True
    address = ipaddress.ip_address(ip)
    return any(address in network for network in networks)  # type: ignore[operator]


calls: list[str] = []


def test_an_address_is_decided_once_per_allow_list() -> None:
    calls.clear()
    check = peer_trust.remembering(_allowed)
    allow = ["10.0.0.0/8"]
    networks = [ipaddress.ip_network("10.0.0.0/8")]
    assert check("10.1.2.3", allow, networks) is True
    assert check("10.1.2.3", allow, networks) is True
    assert check("127.0.0.1", allow, networks) is False
    assert check("127.0.0.1", allow, networks) is False
    assert calls == ["10.1.2.3", "127.0.0.1"]
    other = ["127.0.0.1"]  # another list: asked again, answered for that list
    assert check("127.0.0.1", other, [ipaddress.ip_network("127.0.0.1/32")]) is True
    assert calls == ["10.1.2.3", "127.0.0.1", "127.0.0.1"]


def test_the_cache_is_bounded() -> None:
    calls.clear()
    check = peer_trust.remembering(_allowed)
    allow: list[str] = ["*"]
    for n in range(peer_trust.LIMIT + 10):
        check(f"10.0.{n // 256}.{n % 256}", allow, [])
    check("10.0.0.0", allow, [])  # emptied since: asked again
    assert len(calls) == peer_trust.LIMIT + 11
