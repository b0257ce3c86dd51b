"""Retiring slots: fewer workers (TTOU, a HUP with fewer ``workers``) means fewer slots.

Theory of operation
-------------------
Gunicorn stops the oldest workers beyond ``num_workers``. Before it does, the slots
that will have no staying worker are *drained*: new connections are steered away
while their workers still accept, for :data:`DRAIN_SECONDS` (the master waits that
long, once per TTOU); then Gunicorn's SIGTERM goes out, each stopping worker takes
what is queued on its socket, and once no worker holds a drained slot the master
closes it (:func:`settle`). A slot that still has connections queued and
no worker is *stranded*: it is kept (the next new worker takes it) for up to
``graceful_timeout`` before it closes anyway, with a warning naming the count.

A slot beyond ``num_workers`` that has no worker at all (its worker had just exited
when TTOU came, so Gunicorn stops nobody) is retired too; if workers are added back
meanwhile (TTOU then TTIN), a drained slot is kept for a new worker.

The draining and stranded states are :class:`~.slot_states.SlotStates`'; this module
only decides (pure policy over them and the table).

Invariants: a slot is only closed when no live worker holds it; ``draining`` and
``stranded`` only name slots of the current table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Mapping
from typing import Any

from .. import _gunicorn
from .slot_states import SlotStates
from .slot_table import Slot, SlotTable

#: How long a slot about to close keeps its worker accepting after new connections
#: are steered away: handshakes already in flight land in its queue and are served.
DRAIN_SECONDS = 0.3


def slots_kept(num_workers: int) -> int:
    """How many slots stay open for ``num_workers`` workers: one at least, so that
    with none (``-w 0``) the port still queues connections for the next worker
    (TTIN), as Gunicorn's shared socket does."""
    return max(1, num_workers)


def choose_drained(states: SlotStates, table: SlotTable, workers: Mapping[int, Any],
                   num_workers: int) -> list[Slot]:
    """Before Gunicorn stops surplus workers: the slots to drain now (a query)."""
    counted = states.counted(workers)
    surplus = len(counted) - num_workers
    draining = states.draining
    to_retire = len(table.slots) - slots_kept(num_workers) - len(draining)
    if surplus <= 0 or to_retire <= 0:
        return []
    by_age = sorted(counted.items(), key=lambda item: _gunicorn.age(item[1]))
    victims = {pid for pid, _ in by_age[:surplus]}
    staying = states.staying()
    kept = {slot for pid, slot in staying.items() if pid not in victims}
    victim_slots = {staying[pid] for pid in victims if pid in staying}
    candidates = [slot for slot in table.slots if slot not in kept and slot not in draining]
    # a victim's slot first: its worker accepts while the slot drains
    candidates.sort(key=lambda slot: slot not in victim_slots)
    return candidates[:to_retire]


def settle(states: SlotStates, table: SlotTable, live: Container[int], num_workers: int,
           graceful_timeout: float, log: Any, retired: Callable[[], None],
           shared: bool = False) -> None:
    """Close drained slots no worker holds any more (``retired()`` after each);
    ``shared``: a USR2 overlap (see :meth:`SlotTable.retire`)."""
    held = states.holders(live)
    now = time.monotonic()
    surplus = len(table.slots) - slots_kept(num_workers) - len(states.draining)
    # workerless slots without a queue first: closing them loses nothing
    for slot in sorted(reversed(table.slots), key=Slot.queued):
        if surplus <= 0:
            break
        if slot not in held and slot not in states.draining:
            states.drain([slot])
            surplus -= 1
    for slot in [slot for slot in table.slots if slot in states.draining]:
        if slot in held:
            continue
        states.drained(slot)
        if len(table.slots) > slots_kept(num_workers):
            lost = slot.queued()
            if lost and now < states.keep_stranded(slot, now + graceful_timeout):
                # Connections wait in it and nobody accepts: the next new worker
                # takes this slot (SlotStates.choose), another one retires.
                continue
            states.retired(slot)
            table.retire(slot, shared)
            retired()
            log.info("retired slot %d; %d listener(s) per bind remain",
                     slot.number, len(table.slots))
            if lost:
                log.warning("slot %d closed with %d connection(s) queued",
                            slot.number, lost)
        else:
            log.info("slot %d is kept for a new worker", slot.number)
