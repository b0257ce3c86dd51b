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
    calls when the timer fires (``time_up``)."""
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
    waits[0].time_up()  # the timer runs first
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
    assert kinds[0] is request_wait.RequestWait
    assert kinds[1] is gevent.Timeout


def test_a_connection_waits_for_each_request_timed_from_each_wait(
        connection: tuple[gevent.socket.socket, socket.socket]) -> None:
    """Three requests 0.06 s apart under a 0.1 s keepalive: each is read (a timer
    timed from the first wait would cut the third), then the idle wait ends the
    block after 0.1 s, silently; no timer is left running."""
    server_side, peer = connection
    got: list[bytes | None] = []
    waits: list[Any] = []

    def handler() -> None:
        request_wait.serving(server_side)
        while True:
            data = None
            with request_wait.wait_for_request(0.1) as wait:
                waits.append(wait)
                assert wait.pending
                data = server_side.recv(100)
            assert not wait.pending
            got.append(data)
            if data is None:
                break

    reader = gevent.spawn(handler)
    for n in range(3):
        gevent.sleep(0.06)
        peer.sendall(b"request %d" % n)
    reader.join(5)
    assert reader.successful(), reader.exception
    assert got == [b"request 0", b"request 1", b"request 2", None]
    assert len({id(wait) for wait in waits}) == 1


def test_an_error_inside_the_wait_stops_its_timer_and_is_not_swallowed(
        connection: tuple[gevent.socket.socket, socket.socket]) -> None:
    server_side, _ = connection
    request_wait.serving(server_side)
    wait = request_wait.wait_for_request(0.05)
    with pytest.raises(ValueError), wait:
        raise ValueError("bad request")
    assert not wait.pending
    gevent.sleep(0.1)  # nothing thrown later into this greenlet
