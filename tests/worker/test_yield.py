"""The worker's yield between requests lets the loop poll for I/O.

A worker yields to the gevent hub once its loop's turn is over its budget, so that
busy keep-alive connections do not starve the others, nor the listening socket's accept. The
yield must reach the loop's poll: ``gevent.sleep(0)`` only queues the greenlet
behind the other callbacks, and a few greenlets doing it keep the loop from
polling (gevent runs callbacks for up to its switch interval). The order is
checked here, not a time: the greenlets doing requests yield in turn, and a
socket that is ready must be seen within their first rounds.
"""

from __future__ import annotations

import socket
from typing import Any

import gevent
import gevent.socket
import pytest

from gunicorn_prefork.worker import slot_worker
from gunicorn_prefork.worker.loop_turn import YIELD_SECONDS


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


class _Yields:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, seconds: float = 0) -> None:
        assert seconds == YIELD_SECONDS
        self.count += 1


def test_the_worker_yields_after_a_kept_connection_over_budget_not_before_a_close(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Through Gunicorn's real gevent worker, whose handle_request returns None:
    Gunicorn's own request handling is replaced by one that keeps the connection
    (returns) or ends it (StopIteration)."""
    from gunicorn.workers import base_async

    from gunicorn_prefork.worker.loop_turn import TURN_BUDGET
    from gunicorn_prefork.worker.slot_worker import SlotWorker

    ends = {"close": False}
    turn_age = {"seconds": 0.0}

    def handled(worker: Any, *_: Any) -> bool:
        worker.nr += 1
        if ends["close"]:
            raise StopIteration()
        return True

    yields = _Yields()
    monkeypatch.setattr(base_async.AsyncWorker, "handle_request", handled)
    monkeypatch.setattr(slot_worker.gevent, "sleep", yields)
    monkeypatch.setattr(slot_worker.loop_turn, "age", lambda: turn_age["seconds"])
    worker = SlotWorker.__new__(SlotWorker)
    worker.nr = 0
    for _ in range(16):  # short turns: no yield
        worker.handle_request("listener", None, None, None)
    assert yields.count == 0
    turn_age["seconds"] = 2 * TURN_BUDGET
    for _ in range(4):  # a turn past its budget: a yield after each request
        worker.handle_request("listener", None, None, None)
    assert yields.count == 4
    ends["close"] = True
    for _ in range(4):
        with pytest.raises(StopIteration):
            worker.handle_request("listener", None, None, None)
    assert yields.count == 4
