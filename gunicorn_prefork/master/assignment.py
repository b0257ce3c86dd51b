"""Which worker serves which slot, and which slot a new worker takes.

Theory of operation
-------------------
Every worker the plugin forks is assigned one slot of the table. A worker is
*staying* while it lives, was not asked to leave (``leaving``: the master sent it
TERM/QUIT/INT/KILL/ABRT) and is not handing its slot over (``handovers``: it leaves
on its own, ``max_requests`` or a TERM/QUIT the master did not send). A new worker
takes the slot with the fewest staying workers, lowest number first, preferring
among those a slot with connections waiting and no worker (*stranded*). So a
replacement lands on the slot its predecessor left, and on HUP each slot gets one
new worker while the old one finishes.

A slot is *vacated* when its last worker exited or started handing over: it gets no
new connections (see :func:`gunicorn_prefork.master.steering_program.allowed_indices`) until the
next worker assigned to it has booted (``awaiting_boot``).

Invariants: ``assignment``, ``leaving`` and ``handovers`` only name live workers
once :meth:`SlotAssignment.prune` ran; a handover has at most one successor, and a
successor is a worker assigned to the same slot; queries (``staying``, ``holders``,
``choose``) never change state.
"""

from __future__ import annotations

from collections.abc import Collection, Container, Mapping, Sequence

from .slot_table import Slot


class SlotAssignment:
    """Worker pid -> slot, and the workers on their way out."""

    def __init__(self) -> None:
        self.assignment: dict[int, Slot] = {}
        #: workers the master asked to leave
        self.leaving: set[int] = set()
        #: workers leaving on their own -> their successor's pid, once forked
        self.handovers: dict[int, int | None] = {}
        #: slots that get no new connections until a new worker on them booted
        self.vacated: set[Slot] = set()
        #: workers on a vacated slot, not booted yet
        self.awaiting_boot: set[int] = set()

    def clear(self) -> None:
        """A new slot table (a HUP changed the binds): forget the old slots."""
        self.assignment.clear()
        self.vacated.clear()

    def prune(self, live: Container[int]) -> None:
        """Forget workers that are gone."""
        for pid in [pid for pid in self.assignment if pid not in live]:
            del self.assignment[pid]
        self.leaving = {pid for pid in self.leaving if pid in live}
        for pid in [pid for pid in self.handovers if pid not in live]:
            del self.handovers[pid]

    # -- queries -----------------------------------------------------------------------

    def staying(self) -> dict[int, Slot]:
        return {pid: slot for pid, slot in self.assignment.items()
                if pid not in self.leaving and pid not in self.handovers}

    def holders(self, live: Container[int]) -> set[int]:
        """ids of the slots some live worker holds."""
        return {id(slot) for pid, slot in self.assignment.items() if pid in live}

    def held_by_other(self, slot: Slot, pid: int, live: Container[int]) -> bool:
        return any(other != pid and held is slot and other in live
                   for other, held in self.assignment.items())

    def choose(self, slots: Sequence[Slot], draining: Collection[Slot],
               stranded: Collection[Slot]) -> Slot:
        """The slot the next new worker takes."""
        load = {id(slot): 0 for slot in slots}
        for slot in self.staying().values():
            if id(slot) in load:
                load[id(slot)] += 1
        open_slots = [slot for slot in slots if slot not in draining]
        # among the least loaded, a slot with connections waiting and no worker first
        return min(open_slots or slots,
                   key=lambda slot: (load[id(slot)], slot not in stranded))

    # -- changes -----------------------------------------------------------------------

    def asked_to_leave(self, pid: int) -> None:
        self.leaving.add(pid)

    def start_handover(self, pid: int) -> Slot | None:
        """``pid`` leaves on its own: its slot gets no new connections until a
        successor serves. Returns the slot (None if it holds none)."""
        slot = self.assignment.get(pid)
        if slot is None or pid in self.handovers or pid in self.leaving:
            return None
        self.handovers[pid] = None
        self.vacated.add(slot)
        return slot

    def assign(self, pid: int, slot: Slot) -> int | None:
        """A new worker serves ``slot``; returns the worker it takes over from, if any."""
        predecessor = None
        for old, successor in self.handovers.items():
            if successor is None and self.assignment.get(old) is slot:
                self.handovers[old] = pid
                predecessor = old
                break
        self.assignment[pid] = slot
        if slot in self.vacated:
            self.vacated.discard(slot)
            self.awaiting_boot.add(pid)
        return predecessor

    def exited(self, pid: int, live: Container[int]) -> Slot | None:
        """A worker exited; its slot is vacated when nobody else holds it."""
        slot = self.assignment.get(pid)
        if slot is not None and not self.held_by_other(slot, pid, live):
            self.vacated.add(slot)
        self.awaiting_boot.discard(pid)
        return slot

    def successor_of(self, pid: int) -> int | None:
        return self.handovers.get(pid)

    def counted(self, workers: Mapping[int, object]) -> dict[int, object]:
        """The workers Gunicorn should count against ``num_workers``."""
        return {pid: w for pid, w in workers.items() if pid not in self.handovers}
