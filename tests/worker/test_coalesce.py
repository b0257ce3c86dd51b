"""Headers and the first body bytes leave in one send, and nothing is held back.

Real Gunicorn ``Response`` objects for a request parsed from a socket pair; the
client socket is a recorder of ``sendall`` calls.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from gunicorn.config import Config
from gunicorn.http import RequestParser
from gunicorn.http.wsgi import Response

from gunicorn_prefork.worker import coalesce
from gunicorn_prefork.worker.coalesce import JOIN_LIMIT


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: Any, *args: Any) -> None:
        self.writes.append(bytes(data))

    def send(self, data: Any, *args: Any) -> int:
        self.writes.append(bytes(data))
        return len(data)


class Partial(Recorder):
    """A socket whose ``send`` takes at most 10 bytes (a full send buffer)."""

    def send(self, data: Any, *args: Any) -> int:
        self.writes.append(bytes(data[:10]))
        return min(10, len(data))


@pytest.fixture(autouse=True)
def installed() -> Iterator[None]:
    original = Response.write
    coalesce.install()
    yield
    Response.write = original


def _response(headers: list[tuple[str, str]], method: str = "GET") -> tuple[Response, Recorder]:
    cfg = Config()
    server, client = socket.socketpair()
    with server, client:
        client.sendall(f"{method} / HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        request = next(iter(RequestParser(cfg, server, ("127.0.0.1", 1))))
    out = Recorder()
    response = Response(request, out, cfg)
    response.start_response("200 OK", headers)
    return response, out


def test_headers_and_a_small_body_leave_in_one_send() -> None:
    response, out = _response([("Content-Length", "11")])
    response.write(b"hello")
    response.write(b" world")
    assert len(out.writes) == 2
    assert out.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert out.writes[0].endswith(b"\r\n\r\nhello")
    assert out.writes[1] == b" world"


def test_an_empty_first_write_sends_the_headers_at_once() -> None:
    response, out = _response([("Content-Type", "text/event-stream")])  # chunked
    response.write(b"")
    assert len(out.writes) == 1 and out.writes[0].endswith(b"\r\n\r\n")


def test_chunked_bytes_are_framed_and_joined() -> None:
    response, out = _response([])
    response.write(b"abc")
    assert len(out.writes) == 1
    assert out.writes[0].endswith(b"\r\n\r\n3\r\nabc\r\n")


def test_a_large_body_is_not_copied_and_order_is_kept() -> None:
    big = b"x" * (JOIN_LIMIT + 1)
    response, out = _response([("Content-Length", str(len(big)))])
    response.write(big)
    assert out.writes[0].endswith(b"\r\n\r\n") and out.writes[1] == big


def test_the_response_keeps_the_real_socket() -> None:
    response, out = _response([("Content-Length", "1")])
    response.write(b"x")
    assert response.sock is out


def test_a_bad_write_still_sends_the_headers_as_gunicorn_does() -> None:
    response, out = _response([("Content-Length", "1")])
    with pytest.raises(TypeError):
        response.write("not bytes")  # type: ignore[arg-type]
    assert len(out.writes) == 1 and out.writes[0].endswith(b"\r\n\r\n")


def test_what_one_send_did_not_take_goes_out_before_write_returns() -> None:
    sock = Partial()
    coalesce.send_all(sock, b"0123456789abcdefghij-and-the-rest")
    assert b"".join(sock.writes) == b"0123456789abcdefghij-and-the-rest"
    assert sock.writes[0] == b"0123456789"
