"""Hand-back, the loop's part (issue 29): which connections may wait as movable, and
what a handed-back one reads."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from gunicorn_prefork.worker import handback
from gunicorn_prefork.worker.claims import HANDED, NOTHING, STARTED, WAITING, Claims


def _request(method: str = "GET", headers: tuple[tuple[str, str], ...] = (),
             buffered: bytes = b"") -> SimpleNamespace:
    unreader = SimpleNamespace(buf=io.BytesIO(buffered))
    unreader.buf.seek(0, io.SEEK_END)
    return SimpleNamespace(method=method, headers=list(headers), unreader=unreader)


@pytest.fixture
def claims() -> Iterator[Claims]:
    made = Claims(movable=handback.movable)
    handback.install(made, keep_alive=True)
    yield made
    handback.install(None)


@pytest.mark.parametrize(("request_", "movable"), [
    (_request(), True),
    (_request("HEAD"), True),
    (_request(buffered=b"GET /next HTTP/1.1\r\n"), False),  # pipelined: read ahead
    (_request("POST", (("CONTENT-LENGTH", "3"),)), False),
    (_request(headers=(("TRANSFER-ENCODING", "chunked"),)), False),
    (_request(headers=(("UPGRADE", "websocket"),)), False),
], ids=["get", "head", "read-ahead", "body", "chunked", "upgrade"])
def test_only_a_connection_whose_request_left_nothing_behind_is_handed_back(
        claims: Claims, request_: SimpleNamespace, movable: bool) -> None:
    left, right = socket.socketpair()
    sock = handback.ClaimSocket(fileno=left.detach())
    try:
        handback.taken(0, sock)
        assert sock.claim is not None and sock.claim.state == WAITING
        assert handback.starts(sock) and sock.claim.state == STARTED
        handback.request_done(sock, request_)
        handback.waits(sock)
        assert sock.claim.state == WAITING
        assert handback.movable(sock.claim) is movable
        # the thread hands back only what may move
        assert claims.hand_back(lambda index, fd: True, 1) == int(movable)
        handback.wait_ends(sock)
        assert sock.claim.state == (STARTED if not movable else HANDED)
    finally:
        sock.close()
        right.close()


@pytest.fixture
def waiting(claims: Claims) -> Iterator[tuple[handback.ClaimSocket, socket.socket]]:
    """A connection whose handler began and now waits for a request, and its peer."""
    left, right = socket.socketpair()
    sock = handback.ClaimSocket(fileno=left.detach())
    handback.taken(0, sock)
    handback.starts(sock)
    handback.waits(sock)
    yield sock, right
    sock.close()
    right.close()


def test_a_handed_back_connection_reads_end_of_stream_and_its_bytes_stay(
        claims: Claims, waiting: tuple[handback.ClaimSocket, socket.socket]) -> None:
    sock, peer = waiting
    peer.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert claims.hand_back(lambda index, fd: True, 1) == 1
    assert sock.claim is not None and sock.claim.state == HANDED
    assert handback.handed_back(sock)
    assert sock.recv(8192) == NOTHING
    assert not handback.starts(sock)
    # nothing was read: the bytes wait for whoever holds the connection now
    with socket.socket(fileno=os.dup(sock.fileno())) as same:
        assert same.recv(64, socket.MSG_PEEK).startswith(b"GET")


def test_a_waiting_connection_is_started_by_its_first_bytes(
        claims: Claims, waiting: tuple[handback.ClaimSocket, socket.socket]) -> None:
    sock, peer = waiting
    peer.sendall(b"GET")
    assert sock.recv(8192) == b"GET"
    assert sock.claim is not None and sock.claim.state == STARTED
    assert claims.hand_back(lambda index, fd: True, 1) == 0
