"""The stall watch's thread (:mod:`gunicorn_prefork.master.watch_thread`): asleep while
nothing is queued, awake when a connection is, never alive across a fork, and no
signal ever delivered to it."""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator

import pytest

from gunicorn_prefork.master import watch_thread
from gunicorn_prefork.master.watch_thread import WatchThread


class Ticks:
    def __init__(self, busy: bool = False) -> None:
        self.calls: list[float | None] = []
        self.threads: set[str] = set()
        self.busy = busy

    def __call__(self, quiet_until: float | None) -> bool:
        self.calls.append(quiet_until)
        self.threads.add(threading.current_thread().name)
        return self.busy


@pytest.fixture
def lock() -> threading.RLock:
    return threading.RLock()


@pytest.fixture
def watches() -> Iterator[list[WatchThread]]:
    made: list[WatchThread] = []
    yield made
    for watch in made:
        watch.close()


def _until(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def test_idle_it_sleeps_and_a_queued_connection_wakes_it(
        listening: socket.socket, lock: threading.RLock, watches: list[WatchThread]) -> None:
    ticks = Ticks()
    watch = WatchThread(0.002, ticks, lambda: [listening.fileno()], lock)
    watches.append(watch)
    watch.start()
    time.sleep(0.3)
    assert watch.wakeups == 0 and ticks.calls == []  # nothing queued: not one wake-up
    client = socket.create_connection(listening.getsockname())
    try:
        assert _until(lambda: len(ticks.calls) >= 1)
        assert ticks.calls[0] is not None  # it slept until then: nothing was queued
        assert ticks.threads == {"gunicorn-prefork-stall-watch"}
        conn, _ = listening.accept()
        conn.close()
        time.sleep(0.1)
        settled = len(ticks.calls)
        time.sleep(0.3)
        assert len(ticks.calls) == settled  # the queue is empty again: asleep
    finally:
        client.close()


def test_while_a_stall_is_possible_it_looks_every_interval(
        lock: threading.RLock, watches: list[WatchThread]) -> None:
    ticks = Ticks(busy=True)
    watch = WatchThread(0.01, ticks, lambda: [], lock)
    watches.append(watch)
    watch.start()
    watch.wake()
    time.sleep(0.3)
    # about 30; at most one per interval, and it keeps looking without a wake-up
    assert 5 <= len(ticks.calls) <= 31
    assert all(quiet is None for quiet in ticks.calls[1:])


def test_it_never_waits_for_the_main_loops_lock(
        lock: threading.RLock, watches: list[WatchThread]) -> None:
    ticks = Ticks()
    watch = WatchThread(0.002, ticks, lambda: [], lock)
    watches.append(watch)
    with lock:
        watch.start()
        watch.wake()
        time.sleep(0.1)
        assert ticks.calls == []  # skipped while the main loop holds it
        watch.stop()  # and stopping never deadlocks with it
    assert not watch.running


def test_no_signal_is_delivered_to_it(lock: threading.RLock,
                                      watches: list[WatchThread]) -> None:
    blocked: list[set[signal.Signals]] = []

    def tick(quiet_until: float | None) -> bool:
        blocked.append(signal.pthread_sigmask(signal.SIG_BLOCK, []))
        return False

    watch = WatchThread(0.002, tick, lambda: [], lock)
    watches.append(watch)
    watch.start()
    watch.wake()
    assert _until(lambda: bool(blocked))
    assert {signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGUSR2} <= blocked[0]
    # and the main thread's mask is as it was
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_it_is_stopped_across_a_fork_and_restarted_in_the_parent(
        lock: threading.RLock, watches: list[WatchThread]) -> None:
    ticks = Ticks()
    watch = WatchThread(0.002, ticks, lambda: [], lock)
    watches.append(watch)
    watch.start()
    others = threading.active_count() - 2  # besides this one and the watch
    read, write = os.pipe()
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        pid = os.fork()
    if pid == 0:  # the child: no such thread, its wake-up pair closed
        alive = [t.name for t in threading.enumerate()]
        os.write(write, b"1" if "gunicorn-prefork-stall-watch" in alive
                 or watch.running else b"0")
        os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 1) == b"0"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert not watch.running  # stopped by the fork, until the master resumes it
    watch_thread.resume_after_fork()
    assert watch.running  # started again in the parent: it still looks when woken
    watch.wake()
    assert _until(lambda: bool(ticks.calls))
    assert [t.name for t in threading.enumerate()].count("gunicorn-prefork-stall-watch") == 1
    if sys.version_info >= (3, 12) and others == 0:
        # no thread alive at the fork: Python 3.12+ warns about fork() otherwise
        messages = [str(w.message) for w in warned]
        assert not [m for m in messages if "multi-threaded" in m], messages
