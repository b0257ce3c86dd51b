"""Gunicorn's wait for a request (:mod:`gunicorn_prefork.worker.request_wait`), with real
sockets and gevent's hub."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.socket
import pytest

from gunicorn_prefork.worker import request_wait


@pytest.fixture
def connection() -> Iterator[tuple[gevent.socket.socket, socket.socket]]:
    ours, peer = socket.socketpair()
    server_side = gevent.socket.socket(fileno=ours.detach())
    yield server_side, peer
    server_side.close()
    peer.close()


def _read_one(server_side: gevent.socket.socket, seconds: float, got: list[bytes | None]) -> None:
    """A handler's read of its request, under the worker's wait."""
    request_wait.serving(server_side)
    data = None
    with request_wait.wait_for_request(seconds):
        data = server_side.recv(100)
    got.append(data)


def test_the_timer_firing_with_the_request_there_does_not_cut_it(
        connection: tuple[gevent.socket.socket, socket.socket]) -> None:
    """A worker held up past ``keepalive``: the timer may come before the read. The
    hub's own order cannot be forced from a test, so the test calls what the hub
    calls when the timer fires (gevent's ``_on_expiration``, the one gevent name a
    test touches: the boundary overrides it)."""
    server_side, peer = connection
    waits: list[Any] = []
    got: list[bytes | None] = []

    def handler() -> None:
        request_wait.serving(server_side)
        data = None
        with request_wait.wait_for_request(30) as wait:
            waits.append(wait)
            data = server_side.recv(100)
        got.append(data)

    reader = gevent.spawn(handler)
    gevent.sleep(0.01)  # it waits for its request
    peer.sendall(b"GET / HTTP/1.1\r\n\r\n")
    waits[0]._on_expiration(reader, waits[0])  # the timer runs first
    reader.join(5)
    assert got == [b"GET / HTTP/1.1\r\n\r\n"]


def test_a_connection_that_sends_nothing_is_closed_after_keepalive(
        connection: tuple[gevent.socket.socket, socket.socket]) -> None:
    server_side, _ = connection
    got: list[bytes | None] = []
    gevent.spawn(_read_one, server_side, 0.05, got).join(5)
    assert got == [None]


def test_each_handler_waits_on_its_own_connection(
        connection: tuple[gevent.socket.socket, socket.socket]) -> None:
    server_side, _ = connection
    kinds: list[type] = []

    def handler() -> None:
        request_wait.serving(server_side)
        kinds.append(type(request_wait.wait_for_request(2)))

    gevent.spawn(handler).join(5)
    gevent.spawn(lambda: kinds.append(type(request_wait.wait_for_request(2)))).join(5)
    assert kinds[0] is not gevent.Timeout and issubclass(kinds[0], gevent.Timeout)
    assert kinds[1] is gevent.Timeout
