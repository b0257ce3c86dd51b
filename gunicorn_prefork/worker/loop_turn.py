"""How long the worker's event loop has been in its current turn.

gevent's loop polls for I/O (new connections on the slot's sockets, requests on
keep-alive connections) once per turn, then runs every ready greenlet. A handler
whose next request is already buffered serves it without going back to the loop,
so a turn with many busy keep-alive connections runs for as long as they have
requests, many milliseconds of CPU even on hello world, while a new connection
waits in the slot's queue (and the master's stall watch sees a queue its worker
does not take on). The worker yields to the loop when the turn has run longer than
:data:`TURN_BUDGET` (:mod:`.slot_worker`), and so does a TLS connection before its
handshake, which costs a good part of that budget in CPU (:mod:`.slot_server`).

The measurements behind these choices, with their dates, commits and commands, are
in ``benchmarks/README.md``, "Figures behind design choices in the code".

A ``check`` watcher stamps the time each turn starts running its ready watchers
(libev runs check watchers right after the poll) and counts the turns. Reading it
costs a clock read. The hand-back thread (:mod:`.handback_thread`) reads the count
to see whether the loop moves, and asks to be woken when the next turn starts
(:func:`wake_on_next_turn`: one write to a pipe, only when asked).

Invariants: installed once per worker process, after the fork (the watcher
belongs to that process's hub); it does not keep the loop alive (``ref=False``);
before :func:`install`, :func:`age` is 0 (no turn known: no yield for it).
"""

from __future__ import annotations

import os
import time
from typing import Any

import gevent

#: How long a yield sleeps: any positive time, so that the greenlet resumes only on
#: the loop's next turn, after it polled for I/O. ``gevent.sleep(0)`` may resume it
#: before the loop polls (gevent's docs say so): a worker with many busy keep-alive
#: connections then went many milliseconds without accepting (the master's stall
#: watch took it for stalled). With the timer the p99 was lower and the false stalls
#: were gone, at the same req/s (figures: benchmarks/README.md).
YIELD_SECONDS = 1e-6

#: A keep-alive handler yields when the loop's turn has run this long: with many
#: busy connections a yield every 4th request was not enough, a turn ran on while a
#: new connection waited. Against no budget it lowered the p99 on 2 and 4 workers
#: (the same req/s on 2 workers, a few percent less on 4), and with
#: ``prefork_load_aware`` it also evened the balance and removed most false stalls;
#: 2 ms lowered the p99 a little more, for the same or a little less req/s
#: (figures: benchmarks/README.md).
TURN_BUDGET = 0.005

_started = 0.0
_watcher: Any = None
#: turns the loop has begun since :func:`install`
_turns = 0
#: a pipe's write end to write a byte to when the next turn begins (then forgotten)
_wake: int | None = None


def _stamp() -> None:
    global _started, _turns, _wake
    _started = time.perf_counter()
    _turns += 1
    if _wake is not None:
        wake, _wake = _wake, None
        try:
            os.write(wake, b"\0")
        except OSError:  # full: the thread is awake already
            pass


def turns() -> int:
    """How many turns the loop has begun (read from any thread)."""
    return _turns


def wake_on_next_turn(fd: int | None) -> None:
    """Write a byte to ``fd`` (non-blocking) when the next turn begins; None: don't."""
    global _wake
    _wake = fd


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


def over_budget() -> bool:
    """Has the loop's current turn run longer than :data:`TURN_BUDGET`?"""
    return age() > TURN_BUDGET


def yield_to_loop() -> None:
    """Let the loop poll for I/O before this greenlet goes on (its next turn)."""
    gevent.sleep(YIELD_SECONDS)
