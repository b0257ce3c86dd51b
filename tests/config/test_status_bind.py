"""``prefork_status_bind``: parsing, and the clash with an application bind."""

from __future__ import annotations

import pytest

from gunicorn_prefork.config.status_bind import StatusAddress, clash, parse


@pytest.mark.parametrize(("text", "address"), [
    ("127.0.0.1:9101", StatusAddress("127.0.0.1", 9101)),
    (" 0.0.0.0:0 ", StatusAddress("0.0.0.0", 0)),
    ("[::1]:9101", StatusAddress("::1", 9101)),
    ("localhost:9101", StatusAddress("localhost", 9101)),
    (None, None),
    ("", None),
])
def test_parses(text: str | None, address: StatusAddress | None) -> None:
    assert parse(text) == address


@pytest.mark.parametrize(("text", "says"), [
    ("9101", "expected HOST:PORT"),
    (":9101", "expected HOST:PORT"),
    ("::1:9101", "brackets"),
    ("[nope]:9101", "not an IPv6 address"),
    ("127.0.0.1:http", "not a port number"),
    ("127.0.0.1:70000", "out of range"),
    ("unix:/run/status.sock", "a TCP address is needed"),
    (9101, "expected HOST:PORT"),
])
def test_refuses(text: object, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse(text)


def test_str_is_what_was_meant() -> None:
    assert str(StatusAddress("::1", 80)) == "[::1]:80"
    assert str(StatusAddress("127.0.0.1", 80)) == "127.0.0.1:80"


@pytest.mark.parametrize(("status", "binds", "taken"), [
    ("127.0.0.1:8000", [("127.0.0.1", 8000)], "127.0.0.1:8000"),
    ("localhost:8000", [("127.0.0.1", 8000)], "127.0.0.1:8000"),
    ("127.0.0.1:8000", [("0.0.0.0", 8000)], "0.0.0.0:8000"),
    ("0.0.0.0:8000", [("127.0.0.1", 8000)], "127.0.0.1:8000"),
    ("[::1]:8000", [("::", 8000)], "[::]:8000"),
    ("127.0.0.1:8001", [("127.0.0.1", 8000)], None),
    ("127.0.0.2:8000", [("127.0.0.1", 8000)], None),
    ("127.0.0.1:8000", ["/run/app.sock"], None),
    ("127.0.0.1:0", [("127.0.0.1", 0)], None),
])
def test_clash(status: str, binds: list[object], taken: str | None) -> None:
    address = parse(status)
    assert address is not None
    assert clash(address, binds) == taken
