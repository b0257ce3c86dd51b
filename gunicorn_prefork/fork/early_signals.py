"""A stop signal that reaches a worker before Gunicorn installs its handlers is kept.

Between its fork and ``init_signals()`` a worker runs with the handlers it inherited
from the master: Gunicorn's arbiter handlers, which queue the signal for a master
loop that never runs in the child. A SIGTERM the master sends then (its stop, or a
surplus worker during a HUP) is lost: the worker boots and serves until the master
SIGKILLs it after ``graceful_timeout`` (seen: a stop right after a ``max_requests``
successor was forked took the whole ``graceful_timeout``). Gunicorn's own workers
have the same window, but fork far less often.

So right after the fork (:func:`hold`, from the child's at-fork handler) the worker
records the stop signals it gets; once its own handlers are in place
(:func:`deliver`) it raises each recorded signal again, and its handler acts on it as
on any signal.

Invariant: only the child records; each recorded signal is delivered once.
"""

from __future__ import annotations

import signal
from types import FrameType

#: What the master sends a worker to stop it (graceful, quick).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)

_pending: list[int] = []


def _record(signum: int, frame: FrameType | None) -> None:
    if signum not in _pending:
        _pending.append(signum)


def hold() -> None:
    """Child, right after the fork: record stop signals until :func:`deliver`."""
    _pending.clear()
    for signum in STOP_SIGNALS:
        signal.signal(signum, _record)


def pending() -> tuple[int, ...]:
    return tuple(_pending)


def deliver() -> None:
    """Child, once its own handlers are installed: raise what was recorded."""
    while _pending:
        signal.raise_signal(_pending.pop(0))
