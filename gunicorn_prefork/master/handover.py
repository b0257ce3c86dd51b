"""Master side of a worker leaving on its own: its successor is forked at once.

A worker leaving on its own (``max_requests``; a TERM or QUIT the master did not
send) announces it (see :mod:`gunicorn_prefork.fork.leaving`, the worker side). Its slot
gets a new worker at once, as on HUP; new connections go to the other serving slots
until the new worker serves, and what is queued on the slot meanwhile is moved to
them (the rescue of an unserved slot). The leaving worker finishes what it holds and
exits on its own (status 0): it waits for no message from the master.

Gunicorn counts every worker in ``WORKERS``; with a leaving worker and its successor
it sees one worker too many and stops the oldest with SIGTERM, on every turn of its
loop. The leaving worker is made the oldest, so that is the one Gunicorn picks, and
that SIGTERM is not sent (:func:`swallows_kill`): the worker is leaving already, the
signal would change nothing but could reach it while its interpreter exits (Gunicorn
then logs ``was sent SIGTERM!`` for a normal recycle). A master that stops sends its
SIGTERM to every worker once; a leaving worker ends within ``graceful_timeout`` all
the same, as any worker told to stop.

At most two processes per slot: a successor that reaches its own limit while its
predecessor still lives is *next in line* (:meth:`.SlotStates.waits_for_predecessor`):
it stops taking connections but gets its own successor only once the predecessor
has exited.

Invariants: successors are forked from the main loop only (:func:`start` runs from
``manage_workers``); each leaving worker gets at most one successor; Gunicorn never
counts a leaving worker against ``num_workers`` once it is first in line on its slot.
"""

from __future__ import annotations

import signal
from typing import Any

from .. import _gunicorn
from ..fork import leaving
from .slot_states import SlotStates


def start(server: _gunicorn.ArbiterView, states: SlotStates, log: Any) -> int:
    """Fork a successor for every worker that announced it leaves on its own and is
    first in line on its slot; returns how many workers began to leave."""
    began = 0
    workers = server.workers()
    states.prune(workers)
    for pid, worker in workers.items():
        if not leaving.announced(_gunicorn.heartbeat_fd(worker)):
            continue
        slot = states.hands_over(pid)
        if slot is None:
            continue
        began += 1
        _gunicorn.make_oldest(worker, workers)
        if states.waits_for_predecessor(pid):
            log.debug("worker %s leaves on its own while its predecessor on slot %d "
                      "still finishes: its successor follows once that one is gone",
                      pid, slot.number)
        else:
            log.debug("worker %s leaves on its own: slot %d gets no new connections "
                      "until its successor serves", pid, slot.number)
    # Gunicorn counts the leaving workers among num_workers; replace them now
    while (states.handing_over
           and len(states.counted(server.workers())) < server.num_workers):
        if server.spawn_worker() is None:
            break
    return began


def swallows_kill(states: SlotStates, pid: int, sig: int) -> bool:
    """Is this Gunicorn's SIGTERM for a worker that leaves on its own (not sent)?"""
    return sig == signal.SIGTERM and states.is_handing_over(pid)
