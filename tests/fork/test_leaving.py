"""A worker's leaving announcement (:mod:`gunicorn_prefork.fork.leaving`), through a
real file shared across a fork, as Gunicorn's heartbeat file is."""

from __future__ import annotations

import os
import signal
import tempfile
from types import FrameType

from gunicorn_prefork.fork import leaving


def test_an_announcement_in_the_worker_is_seen_by_the_master() -> None:
    woken: list[int] = []

    def on_chld(signum: int, frame: FrameType | None) -> None:
        woken.append(signum)

    previous = signal.signal(signal.SIGCHLD, on_chld)
    try:
        with tempfile.TemporaryFile() as heartbeat:
            fd = heartbeat.fileno()
            assert not leaving.announced(fd)
            pid = os.fork()
            if pid == 0:  # the worker: announce to its master (the test process)
                leaving.announce(fd, os.getppid())
                os._exit(0)
            os.waitpid(pid, 0)
            assert leaving.announced(fd)
    finally:
        signal.signal(signal.SIGCHLD, previous)
    assert woken  # the wake-up (and the child's exit) arrived as SIGCHLD


def test_nothing_is_announced_without_a_heartbeat_file() -> None:
    assert not leaving.announced(None)
    leaving.announce(None, os.getpid())  # no file: nothing happens
