"""Retiring slots: fewer workers (TTOU, a HUP with fewer ``workers``) means fewer slots.

Theory of operation
-------------------
Gunicorn stops the oldest workers beyond ``num_workers``. Before it does, the slots
that will have no staying worker are *drained*: new connections are steered away
while their workers still accept, for :data:`DRAIN_SECONDS` (the master waits that
long, once per TTOU); then Gunicorn's SIGTERM goes out, each stopping worker takes
what is queued on its socket, and once no worker holds a drained slot the master
closes it (:meth:`Retirement.settle`). A slot that still has connections queued and
no worker is *stranded*: it is kept (the next new worker takes it) for up to
``graceful_timeout`` before it closes anyway, with a warning naming the count.

A slot beyond ``num_workers`` that has no worker at all (its worker had just exited
when TTOU came, so Gunicorn stops nobody) is retired too; if workers are added back
meanwhile (TTOU then TTIN), a drained slot is kept for a new worker.

Invariants: a slot is only closed when no live worker holds it; ``draining`` and
``stranded`` only name slots of the current table.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Mapping
from typing import Any

from .. import _gunicorn
from .assignment import SlotAssignment
from .slot_table import Slot, SlotTable, queued

#: How long a slot about to close keeps its worker accepting after new connections
#: are steered away: handshakes already in flight land in its queue and are served.
DRAIN_SECONDS = 0.3


def queued_on(slot: Slot) -> int:
    """Connections waiting in the slot's accept queues."""
    return sum(queued(listener) for listener in slot.sockets)


class Retirement:
    """The slots being drained and those stranded with connections queued."""

    def __init__(self) -> None:
        self.draining: set[Slot] = set()
        #: workerless slots with connections queued, and until when they may wait
        self.stranded: dict[Slot, float] = {}

    def clear(self) -> None:
        self.draining.clear()
        self.stranded.clear()

    def choose_drained(self, table: SlotTable, workers: Mapping[int, Any], num_workers: int,
                       assignment: SlotAssignment) -> list[Slot]:
        """Before Gunicorn stops surplus workers: the slots to drain now (a query)."""
        counted = assignment.counted(workers)
        surplus = len(counted) - num_workers
        to_retire = len(table.slots) - num_workers - len(self.draining)
        if surplus <= 0 or to_retire <= 0:
            return []
        by_age = sorted(counted.items(), key=lambda item: _gunicorn.age(item[1]))
        victims = {pid for pid, _ in by_age[:surplus]}
        staying = assignment.staying()
        kept = {id(slot) for pid, slot in staying.items() if pid not in victims}
        victim_slots = {id(staying[pid]) for pid in victims if pid in staying}
        candidates = [slot for slot in table.slots
                      if id(slot) not in kept and slot not in self.draining]
        # a victim's slot first: its worker accepts while the slot drains
        candidates.sort(key=lambda slot: id(slot) not in victim_slots)
        return candidates[:to_retire]

    def settle(self, table: SlotTable, live: Container[int], num_workers: int,
               graceful_timeout: float, assignment: SlotAssignment, log: Any,
               retired: Callable[[], None]) -> None:
        """Close drained slots no worker holds any more (``retired()`` after each)."""
        held = assignment.holders(live)
        now = time.monotonic()
        surplus = len(table.slots) - num_workers - len(self.draining)
        # workerless slots without a queue first: closing them loses nothing
        for slot in sorted(reversed(table.slots), key=queued_on):
            if surplus <= 0:
                break
            if id(slot) not in held and slot not in self.draining:
                self.draining.add(slot)
                surplus -= 1
        for slot in [slot for slot in table.slots if slot in self.draining]:
            if id(slot) in held:
                continue
            self.draining.discard(slot)
            if len(table.slots) > num_workers:
                lost = queued_on(slot)
                if lost and now < self.stranded.setdefault(slot, now + graceful_timeout):
                    # Connections wait in it and nobody accepts: the next new worker
                    # takes this slot (SlotAssignment.choose), another one retires.
                    continue
                self.stranded.pop(slot, None)
                table.retire(slot)
                retired()
                log.info("retired slot %d; %d listener(s) per bind remain",
                         slot.number, len(table.slots))
                if lost:
                    log.warning("slot %d closed with %d connection(s) queued",
                                slot.number, lost)
            else:
                log.info("slot %d is kept for a new worker", slot.number)
