"""Gunicorn 20.1 to 23 reap workers in their SIGCHLD handler: ``Arbiter.WORKERS`` loses
a worker, and the plugin records a crash, between any two steps of the main loop.

A Python loop over such a dict or deque then raises "changed size during iteration"
and Gunicorn's main loop dies ("Unhandled exception in main loop": CI, 2026-12-01,
``make_oldest`` during a HUP with recycling workers; every connection refused after).
Each loop here reads a copy made in one C call, which a signal handler cannot split.
These tests run each reader while a real signal handler keeps changing what it reads.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

from gunicorn_prefork import _gunicorn
from gunicorn_prefork.master.recovery import Crash, CrashCounter
from gunicorn_prefork.master.slot_states import SlotStates


class _Worker:
    def __init__(self, age: int) -> None:
        self.age = age


def _while_changed(read: Callable[[], Any], change: Callable[[], None],
                   seconds: float = 0.5) -> None:
    """``read()`` over and over while a SIGALRM handler runs ``change()`` every 50
    microseconds (stopped before anything is reported)."""
    previous = signal.signal(signal.SIGALRM, lambda *_: change())
    signal.setitimer(signal.ITIMER_REAL, 0.00005, 0.00005)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            read()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _worker_churn(workers: dict[int, Any]) -> Callable[[], None]:
    pids = iter(range(10**6, 10**7))

    busy = []

    def change() -> None:  # as reap_workers pops the oldest and spawn_worker adds one
        if busy:  # the next signal came while this handler ran: skip it
            return
        busy.append(True)
        try:
            workers.pop(next(iter(workers)), None)
            workers[next(pids)] = _Worker(0)
        finally:
            busy.clear()
    return change


def test_counted_reads_gunicorn_workers_while_they_are_reaped() -> None:
    workers: dict[int, Any] = {pid: _Worker(pid) for pid in range(2000)}
    _while_changed(lambda: SlotStates().counted(workers), _worker_churn(workers))


def test_make_oldest_reads_gunicorn_workers_while_they_are_reaped() -> None:
    workers: dict[int, Any] = {pid: _Worker(pid) for pid in range(2000)}
    _while_changed(lambda: _gunicorn.make_oldest(_Worker(0), workers),
                   _worker_churn(workers))


def test_recent_crashes_are_read_while_one_is_recorded() -> None:
    counter = CrashCounter(threshold=0, window=3600.0)
    for n in range(2000):
        counter.record(Crash(time.monotonic(), n, "test"))
    _while_changed(lambda: counter.recent(time.monotonic()),
                   lambda: counter.record(Crash(time.monotonic(), 0, "test")))


def test_the_arbiter_view_hands_out_workers_to_iterate_while_they_are_reaped() -> None:
    class _Arbiter:
        def __init__(self) -> None:
            self.WORKERS: dict[int, Any] = {pid: _Worker(pid) for pid in range(2000)}

    arbiter = _Arbiter()
    view = _gunicorn.ArbiterView(arbiter)

    def read() -> None:  # as the plugin's main-loop code walks the workers
        for _pid, worker in view.workers().items():
            worker.age += 0

    _while_changed(read, _worker_churn(arbiter.WORKERS))
    assert view.workers() is not arbiter.WORKERS
