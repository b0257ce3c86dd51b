"""The worker's yield between requests lets the loop poll for I/O.

A worker yields to the gevent hub every few requests so that busy keep-alive
connections do not starve the others, nor the listening socket's accept. The
yield must reach the loop's poll: ``gevent.sleep(0)`` only queues the greenlet
behind the other callbacks, and a few greenlets doing it keep the loop from
polling (gevent runs callbacks for up to its switch interval). The order is
checked here, not a time: the greenlets doing requests yield in turn, and a
socket that is ready must be seen within their first rounds.
"""

from __future__ import annotations

import socket

import gevent
import gevent.socket

from gunicorn_prefork.worker.slot_worker import YIELD_SECONDS


def test_a_ready_socket_is_seen_while_busy_greenlets_yield() -> None:
    rounds: list[int] = []
    seen_at: list[int] = []

    def busy(index: int) -> None:  # a connection whose next request is always there
        for turn in range(2000):
            if index == 0:
                rounds.append(turn)
            gevent.sleep(YIELD_SECONDS)

    def accept(sock: gevent.socket.socket) -> None:  # the listening socket's wait
        sock.recv(1)
        seen_at.append(len(rounds))

    left, right = gevent.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        waiter = gevent.spawn(accept, left)
        gevent.sleep(YIELD_SECONDS)            # it waits on the socket now
        workers = [gevent.spawn(busy, index) for index in range(8)]
        gevent.sleep(YIELD_SECONDS)
        right.sendall(b"x")                    # a connection arrives
        gevent.joinall([waiter, *workers], timeout=60)
    finally:
        left.close()
        right.close()
    assert seen_at and seen_at[0] <= 3, f"seen after {seen_at} rounds of yields"
