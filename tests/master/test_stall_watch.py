"""The stall watch's rule, with a real listening socket for the queue and the real
shared progress page: no clock, no timer (``tick`` is given the time)."""

from __future__ import annotations

import socket

from gunicorn_prefork.fork.progress import ProgressPage
from gunicorn_prefork.master.stall_watch import (
    REPORT_AFTER,
    StallWatch,
    WatchedSlot,
    cpu_wait_limit,
)
from gunicorn_prefork.master.worker_cpu import CpuSample
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


class _FakeCpu:
    """The scheduler's view of the slot's worker, set by the test."""

    def __init__(self) -> None:
        self.ran_ns = 0
        self.runnable = True
        self.readable = True

    def __call__(self, pids: tuple[int, ...]) -> CpuSample | None:
        assert pids == (4242,)
        return CpuSample(self.ran_ns, self.runnable) if self.readable else None


def _cpu_watch(listening: socket.socket
               ) -> tuple[StallWatch, _FakeCpu, list[WatchedSlot], list[socket.socket]]:
    page = ProgressPage()
    slot = Slot([Listener(listening)])
    cpu = _FakeCpu()
    watch = StallWatch(0.02, page, cpu=cpu)
    clients = [socket.create_connection(listening.getsockname()) for _ in range(2)]
    return watch, cpu, [WatchedSlot(1, page.index_for(slot), slot, (4242,))], clients


def test_a_worker_waiting_for_a_cpu_is_not_stalled_until_it_ran_a_threshold(
        listening: socket.socket) -> None:
    watch, cpu, slots, clients = _cpu_watch(listening)
    watch.tick(0.0, slots)                       # the queue waits: CPU read from here
    assert not watch.tick(0.05, slots)           # past the threshold, ran nothing
    cpu.ran_ns = 15_000_000
    assert not watch.tick(0.07, slots) and watch.deferred == 1
    cpu.ran_ns = 20_000_000                      # ran 20 ms and took nothing on
    assert watch.tick(0.08, slots) and watch.stalled == {0}
    assert watch.total == 1 and watch.deferred == 1
    del clients


def test_a_worker_that_had_its_share_of_a_cpu_is_stalled_at_the_threshold(
        listening: socket.socket) -> None:
    """CPU-bound code on a busy machine: it runs half the time and takes nothing on."""
    watch, cpu, slots, clients = _cpu_watch(listening)
    watch.tick(0.0, slots)
    watch.tick(0.005, slots)                     # the queue waits: CPU read from here
    cpu.ran_ns = 12_000_000
    assert watch.tick(0.025, slots) and watch.stalled == {0} and watch.deferred == 0
    del clients


def test_a_worker_that_does_not_run_is_stalled_at_the_threshold(
        listening: socket.socket) -> None:
    """Stopped (SIGSTOP) or blocked in a call: not runnable, so the wall clock."""
    watch, cpu, slots, clients = _cpu_watch(listening)
    cpu.runnable = False
    watch.tick(0.0, slots)
    assert not watch.tick(0.01, slots)
    assert watch.tick(0.03, slots) and watch.deferred == 0
    del clients


def test_waiting_for_a_cpu_has_a_limit(listening: socket.socket) -> None:
    watch, _, slots, clients = _cpu_watch(listening)
    watch.tick(0.0, slots)
    assert not watch.tick(cpu_wait_limit(0.02) - 0.01, slots)
    assert watch.tick(cpu_wait_limit(0.02), slots) and watch.stalled == {0}
    del clients


def test_an_unreadable_worker_goes_by_the_wall_clock(listening: socket.socket) -> None:
    watch, cpu, slots, clients = _cpu_watch(listening)
    cpu.readable = False
    watch.tick(0.0, slots)
    assert watch.tick(0.03, slots) and watch.stalled == {0}
    del clients


def test_the_cpu_clock_restarts_when_the_worker_moves(listening: socket.socket) -> None:
    watch, cpu, slots, clients = _cpu_watch(listening)
    page = watch.page
    watch.tick(0.0, slots)
    cpu.ran_ns = 9_000_000
    assert not watch.tick(0.05, slots)
    page.bump(slots[0].progress or 0)            # it took one on: a new wait begins
    assert not watch.tick(0.06, slots)
    watch.tick(0.07, slots)                      # read from 9 ms
    cpu.ran_ns = 14_000_000
    assert not watch.tick(0.09, slots)           # 5 ms since: not yet
    cpu.ran_ns = 30_000_000
    assert watch.tick(0.10, slots)               # 21 ms since: stalled
    del clients
