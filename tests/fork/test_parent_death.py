"""A worker gets SIGKILL when its master dies (PR_SET_PDEATHSIG), real processes."""

from __future__ import annotations

import os
import signal
import time

from gunicorn_prefork.fork import parent_death


def test_a_child_dies_with_its_parent() -> None:
    read, write = os.pipe()
    parent = os.fork()
    if parent == 0:  # the "master"
        os.close(read)
        child = os.fork()
        if child == 0:  # the "worker"
            parent_death.die_with(os.getppid())
            time.sleep(60)
            os._exit(0)
        os.write(write, f"{child}\n".encode())
        time.sleep(60)
        os._exit(0)
    os.close(write)
    child = int(os.read(read, 64).split()[0])
    os.close(read)
    time.sleep(0.2)  # the worker has asked for the signal by now
    os.kill(parent, signal.SIGKILL)
    os.waitpid(parent, 0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    os.kill(child, signal.SIGKILL)
    raise AssertionError("the worker outlived its master")
