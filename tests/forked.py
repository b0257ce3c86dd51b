"""Run a function in a forked child of the test process and get its answer back: what a
child inherits (descriptors, credentials) is what some tests are about."""

from __future__ import annotations

import os
from collections.abc import Callable


def in_forked_child(work: Callable[[], str]) -> str:
    """``work()`` in a child forked now; returns what it returned ("" if it raised).
    The child leaves with ``os._exit``: none of the test process's clean-up runs twice."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.write(write, work().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        result = answer.read().decode()
    os.waitpid(pid, 0)
    return result
