"""How long the worker's event loop has been in its current turn.

gevent's loop polls for I/O (new connections on the slot's sockets, requests on
keep-alive connections) once per turn, then runs every ready greenlet. A handler
whose next request is already buffered serves it without going back to the loop,
so a turn with many busy keep-alive connections runs for as long as they have
requests: 10 ms of CPU and more on hello world with 16-20 connections, while a new
connection waits in the slot's queue (and the master's stall watch sees a queue its
worker does not take on). The worker yields to the loop when the turn has run
longer than a budget (:mod:`.slot_worker`).

A ``check`` watcher stamps the time each turn starts running its ready watchers
(libev runs check watchers right after the poll). Reading it costs a clock read.

Invariants: installed once per worker process, after the fork (the watcher
belongs to that process's hub); it does not keep the loop alive (``ref=False``);
before :func:`install`, :func:`age` is 0 (no turn known: no yield for it).
"""

from __future__ import annotations

import time
from typing import Any

import gevent

_started = 0.0
_watcher: Any = None


def _stamp() -> None:
    global _started
    _started = time.perf_counter()


def install() -> None:
    """In the worker, before its loop runs."""
    global _watcher
    if _watcher is not None:
        return
    _watcher = gevent.get_hub().loop.check(ref=False)
    _watcher.start(_stamp)


def age() -> float:
    """Seconds since the loop's current turn began (0 before :func:`install`)."""
    return time.perf_counter() - _started if _started else 0.0
