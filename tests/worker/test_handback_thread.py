"""The hand-back thread (issue 29), a real native thread on real sockets: it answers
the master's ask, hands back on its own only while the main thread is busy on a CPU
with the loop turning no more, and passes connections that still work."""

from __future__ import annotations

import importlib
import os
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from gunicorn_prefork.worker import handback_thread
from gunicorn_prefork.worker.claims import HANDED, WAITING, Claim, Claims
from gunicorn_prefork.worker.handback_thread import HandBackThread, keep_alive_moves


def _original(module: str, name: str) -> Any:
    return getattr(importlib.import_module(module), name)


class _Loop:
    """Stands in for :mod:`.loop_turn`: the turns never move unless told."""

    def __init__(self) -> None:
        self.count = 0
        self.wake: int | None = None

    def turns(self) -> int:
        return self.count

    def wake_on_next_turn(self, fd: int | None) -> None:
        self.wake = fd


@pytest.fixture
def channel() -> Iterator[tuple[socket.socket, socket.socket]]:
    master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    master_end.setblocking(False)
    yield master_end, worker_end
    master_end.close()
    worker_end.close()


@pytest.fixture
def connections() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """Three (client, server side) TCP connections on 127.0.0.1."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        pairs = []
        for _ in range(3):
            client = socket.create_connection(listener.getsockname())
            pairs.append((client, listener.accept()[0]))
    yield pairs
    for client, server in pairs:
        client.close()
        server.close()


def _offer(claims: Claims, connections: list[tuple[socket.socket, socket.socket]]) -> list[Claim]:
    offered = [Claim(server.fileno(), index) for index, (_, server) in enumerate(connections)]
    for claim in offered:
        claims.register(claim)
    return offered


def _received(master_end: socket.socket, seconds: float = 2.0) -> list[tuple[int, socket.socket]]:
    got: list[tuple[int, socket.socket]] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data, fds, _, _ = socket.recv_fds(master_end, 1, 1)
        except BlockingIOError:
            if got:
                time.sleep(0.05)
                try:
                    data, fds, _, _ = socket.recv_fds(master_end, 1, 1)
                except BlockingIOError:
                    return got
            else:
                time.sleep(0.01)
                continue
        got += [(data[0], socket.socket(fileno=fd)) for fd in fds]
    return got


@pytest.fixture
def running(channel: tuple[socket.socket, socket.socket],
            connections: list[tuple[socket.socket, socket.socket]]
            ) -> tuple[socket.socket, _Loop, list[Claim]]:
    """The thread, started on the worker's end with the three connections waiting:
    (the master's end, the stand-in loop, their claims)."""
    master_end, worker_end = channel
    claims, loop = Claims(), _Loop()
    offered = _offer(claims, connections)
    HandBackThread(worker_end, claims, loop.turns, loop.wake_on_next_turn, _original).start()
    return master_end, loop, offered


def test_the_thread_answers_the_masters_ask_with_connections_that_work(
        running: tuple[socket.socket, _Loop, list[Claim]],
        connections: list[tuple[socket.socket, socket.socket]]) -> None:
    master_end, _, offered = running
    master_end.send(bytes([2]))  # at most two
    got = _received(master_end)
    assert [index for index, _ in got] == [0, 1]
    assert [claim.state for claim in offered] == [HANDED, HANDED, WAITING]
    # the received descriptors are the connections themselves
    for (index, conn), (client, _) in zip(got, connections):
        client.sendall(b"ping %d" % index)
        assert conn.recv(16) == b"ping %d" % index
        conn.close()
    master_end.close()  # the thread ends when the master's end is gone


def test_the_thread_hands_back_on_its_own_only_while_the_main_thread_is_busy(
        running: tuple[socket.socket, _Loop, list[Claim]]) -> None:
    master_end, loop, offered = running
    time.sleep(0.3)  # idle (blocked, not on a CPU), the turns stand still: nothing moves
    assert [claim.state for claim in offered] == [WAITING] * 3
    assert loop.wake is not None  # it sleeps until the next turn begins
    loop.count += 1  # a turn begins ...
    wake, loop.wake = loop.wake, None
    os.write(wake, b"\0")
    end = time.monotonic() + 0.5
    while time.monotonic() < end:  # ... and runs on a CPU without end
        pass
    got = _received(master_end)
    assert [index for index, _ in got] == [0, 1, 2]
    assert [claim.state for claim in offered] == [HANDED] * 3
    for _, conn in got:
        conn.close()
    master_end.close()


@pytest.mark.parametrize(("proxy", "protocol", "moves"), [
    (False, None, True), ("off", "http", True), (True, None, False), ("v1", "http", False),
    ("auto", "http", False), ("off", "uwsgi", False)])
def test_keep_alive_connections_move_only_without_proxy_protocol_over_http(
        proxy: object, protocol: object, moves: bool) -> None:
    assert keep_alive_moves(SimpleNamespace(proxy_protocol=proxy, protocol=protocol)) is moves


def test_the_constants_keep_their_order() -> None:
    assert 0 < handback_thread.SAMPLE < handback_thread.STUCK_AFTER
