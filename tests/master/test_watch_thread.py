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
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from gunicorn_prefork.master import watch_thread
from gunicorn_prefork.master.watch_thread import WatchThread

#: what the thread did: ("tick", quiet_until), ("poll", fds, timeout), ("returned",)
Event = tuple[Any, ...]


class Ticks:
    def __init__(self, busy: bool = False, events: list[Event] | None = None) -> None:
        self.calls: list[float | None] = []
        self.threads: set[str] = set()
        self.busy = busy
        #: shared with a :class:`Polls`: ticks and waits in the order the thread made them
        self.events = events if events is not None else []

    def __call__(self, quiet_until: float | None) -> bool:
        self.calls.append(quiet_until)
        self.threads.add(threading.current_thread().name)
        self.events.append(("tick", quiet_until))
        return self.busy


class Polls:
    """The thread's ``poll``: records every wait (its descriptors and timeout) as the
    thread decided it, then waits with :func:`watch_thread.poll_readable`.

    With ``timed_out_until`` set, a wait with a timeout ends at once as if the timeout
    had passed, until that many ticks were recorded; from then on every wait has no
    limit but a wake-up (``stop()``): the test's clock, not the machine's, decides
    how many ticks there are.
    """

    def __init__(self, events: list[Event], timed_out_until: int | None = None) -> None:
        self.events = events
        self.timed_out_until = timed_out_until

    def ticks(self) -> int:
        return sum(1 for event in list(self.events) if event[0] == "tick")

    def __call__(self, fds: Sequence[int], timeout: float | None) -> Sequence[int]:
        self.events.append(("poll", frozenset(fds), timeout))
        try:
            if self.timed_out_until is not None:
                if timeout is not None and self.ticks() < self.timed_out_until:
                    return []
                if self.ticks() >= self.timed_out_until:
                    timeout = None
            return watch_thread.poll_readable(fds, timeout)
        finally:
            self.events.append(("returned",))


@pytest.fixture
def lock() -> threading.RLock:
    return threading.RLock()


@pytest.fixture
def watches() -> Iterator[list[WatchThread]]:
    made: list[WatchThread] = []
    yield made
    for watch in made:
        watch.stop()
        # the master keeps its wake-up pair for its lifetime (a worker closes its
        # inherited copy at the fork); a test closes it itself
        watch._wake_r.close()
        watch._wake_w.close()


def _until(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


def test_idle_it_sleeps_and_a_queued_connection_wakes_it(
        listening: socket.socket, lock: threading.RLock, watches: list[WatchThread]) -> None:
    events: list[Event] = []
    ticks = Ticks(events=events)
    watch = WatchThread(0.002, ticks, lambda: [listening.fileno()], lock,
                        poll=Polls(events))
    watches.append(watch)
    watch.start()
    assert _until(lambda: bool(events))
    time.sleep(0.3)
    # nothing queued: one wait, with no time limit, on the socket; it has not ended
    assert len(events) == 1 and events[0][0] == "poll" and events[0][2] is None
    assert listening.fileno() in events[0][1]
    assert watch.wakeups == 0 and ticks.calls == []
    client = socket.create_connection(listening.getsockname())
    try:
        assert _until(lambda: len(ticks.calls) >= 1)
        assert ticks.calls[0] is not None  # it slept until then: nothing was queued
        assert ticks.threads == {"gunicorn-prefork-stall-watch"}
        conn, _ = listening.accept()
        conn.close()
        accepted = len(events)

        def asleep_again() -> bool:  # in a wait with no limit begun after the accept
            last = events[-1]
            return len(events) > accepted and last[0] == "poll" and last[2] is None

        assert _until(asleep_again)
        settled = len(events)
        time.sleep(0.3)
        assert len(events) == settled  # the queue is empty: that wait has not ended
    finally:
        client.close()


def test_while_a_stall_is_possible_it_looks_every_interval(
        listening: socket.socket, lock: threading.RLock, watches: list[WatchThread]) -> None:
    events: list[Event] = []
    ticks = Ticks(busy=True, events=events)
    polls = Polls(events, timed_out_until=5)
    watch = WatchThread(0.01, ticks, lambda: [listening.fileno()], lock, poll=polls)
    watches.append(watch)
    watch.start()
    watch.wake()
    assert _until(lambda: polls.ticks() == 5 and events[-1][0] == "poll")
    watch.stop()
    assert events[-1] == ("returned",)
    made = [event for event in events if event != ("returned",)]
    # the first wait: for the sockets (or a wake-up), as long as it takes
    first = made[0]
    assert first[0] == "poll" and first[2] is None
    assert listening.fileno() in first[1]
    # then, while each tick asks to look again: tick, a wait of one interval, tick,
    # ...: at most one tick per interval, and never a wait for the sockets (it keeps
    # looking without a wake-up); no tick after the first knows of a quiet moment
    wake_only = frozenset(first[1]) - {listening.fileno()}
    assert made[1:] == [("tick", ticks.calls[0]), ("poll", wake_only, 0.01),
                        *[("tick", None), ("poll", wake_only, 0.01)] * 4]
    assert isinstance(ticks.calls[0], float)


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
