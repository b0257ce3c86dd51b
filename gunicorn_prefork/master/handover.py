"""Master side of a worker leaving on its own: its successor overlaps with it.

A worker leaving on its own (``max_requests``; a TERM or QUIT the master did not
send) announces it (see :mod:`gunicorn_prefork.fork.leaving`, the worker side). Its slot
gets a new worker at once, as on HUP, while the old one keeps accepting; new
connections go to the other serving slots until the new worker serves. The leaving
worker is made the oldest, so Gunicorn's own surplus check picks it, and its
SIGTERM is held back (:func:`defers_kill`) until the new worker serves: a slot is
never without an accepting worker and no client waits for a boot.

Invariants: successors are forked from the main loop only (:func:`start` runs from
``manage_workers``); each leaving worker gets at most one successor; Gunicorn never
counts a leaving worker against ``num_workers`` once its successor exists.
"""

from __future__ import annotations

import signal
from typing import Any

from .. import _gunicorn
from ..fork import leaving
from .boot_watch import BootWatch
from .slot_states import SlotStates


def start(server: _gunicorn.ArbiterView, states: SlotStates, log: Any) -> None:
    """Fork a successor for every worker that announced it leaves on its own."""
    workers = server.workers()
    states.prune(workers)
    for pid, worker in workers.items():
        if not leaving.announced(_gunicorn.heartbeat_fd(worker)):
            continue
        slot = states.hands_over(pid)
        if slot is None:
            continue
        _gunicorn.make_oldest(worker, workers)
        log.debug("worker %s leaves on its own: slot %d gets no new connections until "
                  "its successor serves", pid, slot.number)
    # Gunicorn counts the leaving workers among num_workers; replace them now
    while (states.handing_over
           and len(states.counted(server.workers())) < server.num_workers):
        if server.spawn_worker() is None:
            break


def defers_kill(server: _gunicorn.ArbiterView, states: SlotStates, boot: BootWatch,
                pid: int, sig: int) -> bool:
    """Hold back a SIGTERM for ``pid`` while its successor lives and does not serve."""
    if sig != signal.SIGTERM:
        return False
    successor = states.successor_of(pid)
    worker = server.workers().get(successor) if successor is not None else None
    if successor is None or worker is None:  # no successor (TTOU) or it died
        return False
    return not boot.update(successor, worker)
