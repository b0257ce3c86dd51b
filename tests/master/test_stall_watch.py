"""The stall watch's rule, with a real listening socket for the queue and the real
shared progress page: no clock, no timer (``tick`` is given the time)."""

from __future__ import annotations

import socket

from gunicorn_prefork.fork.progress import ProgressPage
from gunicorn_prefork.master.stall_watch import (
    REPORT_AFTER,
    StallWatch,
    WatchedSlot,
)
from tests.listening import Listener, Slot


def _watch(listening: socket.socket) -> tuple[StallWatch, ProgressPage, list[WatchedSlot]]:
    page = ProgressPage()
    slot = Slot([Listener(listening)])
    index = page.index_for(slot)
    return StallWatch(0.02, page), page, [WatchedSlot(1, index, slot)]


def test_an_idle_worker_never_stalls(listening: socket.socket) -> None:
    watch, _, slots = _watch(listening)
    assert not any(watch.tick(t / 100, slots) for t in range(300))
    assert watch.total == 0


def test_queued_without_progress_stalls_until_the_counter_moves(
        listening: socket.socket) -> None:
    watch, page, slots = _watch(listening)
    clients = [socket.create_connection(listening.getsockname()) for _ in range(2)]
    watch.tick(0.0, slots)
    assert not watch.tick(0.01, slots)           # within the threshold
    assert watch.tick(0.03, slots) and watch.stalled == {0}
    listening.accept()[0].close()                # the master moved them away:
    listening.accept()[0].close()                # the queue is empty, still stalled
    assert not watch.tick(0.5, slots) and watch.stalled == {0}
    watch.tick(0.03 + REPORT_AFTER, slots)
    assert [e.kind for e in watch.take_events()] == ["started"]
    assert page.read(slots[0].progress or 0) == 0
    page.bump(slots[0].progress or 0)           # the worker answered a probe
    assert watch.tick(2.0, slots) and watch.stalled == frozenset()
    assert [e.kind for e in watch.take_events()] == ["ended"]
    assert watch.total == 1
    del clients


def test_a_worker_that_takes_connections_on_is_not_stalled(
        listening: socket.socket) -> None:
    watch, page, slots = _watch(listening)
    clients = [socket.create_connection(listening.getsockname()) for _ in range(2)]
    for step in range(100):
        page.bump(slots[0].progress or 0)        # busy, but it moves
        assert not watch.tick(step * 0.01, slots)
    assert watch.total == 0
    del clients
