"""The one owner of the slot and worker states, and of every transition between them.

Everything the master knows about which worker serves which slot, who is on the way
out and which slots get no new connections lives here. Other modules read it
through the queries below (read-only views and copies) and change it only through
the event methods; no other module keeps its own idea of who serves, leaves or
drains. (Per-slot *resources* are kept by their owners, keyed by the slot object:
the progress page's index, the rescue channel. So are *observations* of a worker or
slot that feed these events: :class:`~.boot_watch.BootWatch` (booted yet?),
:class:`~.stall_watch.StallWatch` (stalled now?), the rescue's probes.)

Events are idempotent where the main loop repeats them: :meth:`hands_over` is called
on every turn for a worker that announced it leaves, and returns None when it
already hands over (or was asked to leave) instead of raising.

States
------
==================  ===================================================================
state               meaning
==================  ===================================================================
*assigned*          the worker (pid) serves this slot (``slot_of``)
*staying*           assigned, not asked to leave and not handing over
*asked to leave*    the master sent it TERM/QUIT/INT/KILL/ABRT (``is_leaving``)
*handing over*      leaving on its own (``max_requests``, a TERM/QUIT the master did
                    not send); its successor, once forked (``successor_of``)
*next in line*      handing over while an earlier worker of its slot still hands over
                    (a successor that reached its own limit early): it gets no
                    successor until that one is gone, so a slot never has more than
                    two processes (``waits_for_predecessor``)
*vacated* (slot)    its last worker exited or started handing over: no new connections
                    until the next worker assigned to it has booted
*awaiting boot*     a worker assigned to a vacated slot, not seen serving yet
*draining* (slot)   about to lose its worker (TTOU): steered away, its worker accepts
*stranded* (slot)   connections queued, no worker: kept until a deadline for the next
                    new worker (which prefers it)
==================  ===================================================================

Transitions (one method per event)
----------------------------------
==========================  ==========================================================
event (method)              change
==========================  ==========================================================
``new_table()``             forget every slot (a HUP changed the binds)
``prune(live)``             forget workers that are gone
``assigned(pid, slot)``     pid is assigned; the first open handover on the slot (not
                            next in line) gets pid as its successor; on a vacated
                            slot: awaiting boot
``asked_to_leave(pid)``     pid is asked to leave
``hands_over(pid)``         pid is handing over; its slot is vacated
``exited(pid, live)``       its slot is vacated unless another live worker holds it;
                            no longer awaiting boot
``serves(pid)``             no longer awaiting boot; its slot is no longer stranded
``drain(slots)``            the slots are draining
``keep_stranded(slot, t)``  a drained slot with a queue and no worker: stranded until
                            ``t`` (the first deadline stays); returns it
``drained(slot)``           no worker holds it any more: no longer draining
``retired(slot)``           the slot closed: neither draining nor stranded
==========================  ==========================================================

Invariants: once :meth:`prune` ran, only live workers are assigned, asked to leave
or handing over; a handover has at most one successor, assigned to the same slot;
slots are keyed by the :class:`~.slot_table.Slot` object itself (identity), never
by ``id()`` (here, in the progress page and in the rescue); queries never change
state.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from types import MappingProxyType

from .slot_table import Slot


class SlotStates:
    """The states of the slots and of the workers that serve them."""

    def __init__(self) -> None:
        self._slot_of: dict[int, Slot] = {}
        self._leaving: set[int] = set()
        self._handovers: dict[int, int | None] = {}
        self._vacated: set[Slot] = set()
        self._awaiting_boot: set[int] = set()
        self._draining: set[Slot] = set()
        self._stranded: dict[Slot, float] = {}

    # -- queries -----------------------------------------------------------------------

    @property
    def slot_of(self) -> Mapping[int, Slot]:
        """Worker pid -> the slot it serves (a read-only view)."""
        return MappingProxyType(self._slot_of)

    @property
    def draining(self) -> frozenset[Slot]:
        return frozenset(self._draining)

    @property
    def stranded(self) -> frozenset[Slot]:
        return frozenset(self._stranded)

    @property
    def handing_over(self) -> bool:
        """Is any worker handing its slot over?"""
        return bool(self._handovers)

    def is_leaving(self, pid: int) -> bool:
        """Did the master ask this worker to leave?"""
        return pid in self._leaving

    def is_awaiting_boot(self, pid: int) -> bool:
        return pid in self._awaiting_boot

    def successor_of(self, pid: int) -> int | None:
        return self._handovers.get(pid)

    def is_handing_over(self, pid: int) -> bool:
        return pid in self._handovers

    def waits_for_predecessor(self, pid: int) -> bool:
        """Is ``pid`` handing over while an earlier handover of its slot is open (that
        worker still lives)? It is counted as a worker until then: no successor yet."""
        slot = self._slot_of.get(pid)
        if pid not in self._handovers or slot is None:
            return False
        for other in self._handovers:  # in the order they began handing over
            if other == pid:
                return False
            if self._slot_of.get(other) is slot:
                return True
        return False

    def staying(self) -> dict[int, Slot]:
        """Workers neither asked to leave nor handing over, and their slots."""
        return {pid: slot for pid, slot in self._slot_of.items()
                if pid not in self._leaving and pid not in self._handovers}

    def holders(self, live: Container[int]) -> set[Slot]:
        """The slots some live worker holds."""
        return {slot for pid, slot in self._slot_of.items() if pid in live}

    def counted(self, workers: Mapping[int, object]) -> dict[int, object]:
        """The workers Gunicorn should count against ``num_workers`` (``workers`` may
        be Gunicorn's live dict: copied before the loop by ``dict()``, which runs no
        Python code, so no signal handler, in between; ``list(d.items())`` may: its
        new tuples can start a garbage collection that runs callbacks)."""
        return {pid: w for pid, w in dict(workers).items()
                if pid not in self._handovers or self.waits_for_predecessor(pid)}

    def choose(self, slots: Sequence[Slot]) -> Slot:
        """The slot the next new worker takes: the fewest staying workers (a worker
        next in line counts as one: its slot has two processes already), lowest
        number first; among those a stranded slot first; never a draining one
        (unless all are)."""
        load = dict.fromkeys(slots, 0)
        waiting = [self._slot_of[pid] for pid in self._handovers
                   if self.waits_for_predecessor(pid)]
        for slot in [*self.staying().values(), *waiting]:
            if slot in load:
                load[slot] += 1
        open_slots = [slot for slot in slots if slot not in self._draining]
        return min(open_slots or slots,
                   key=lambda slot: (load[slot], slot not in self._stranded))

    # -- events ------------------------------------------------------------------------

    def new_table(self) -> None:
        self._slot_of.clear()
        self._vacated.clear()
        self._draining.clear()
        self._stranded.clear()

    def prune(self, live: Container[int]) -> None:
        for pid in [pid for pid in self._slot_of if pid not in live]:
            del self._slot_of[pid]
        self._leaving = {pid for pid in self._leaving if pid in live}
        for pid in [pid for pid in self._handovers if pid not in live]:
            del self._handovers[pid]

    def assigned(self, pid: int, slot: Slot) -> int | None:
        """A new worker serves ``slot``; returns the worker it takes over from, if any."""
        predecessor = None
        for old, successor in self._handovers.items():
            if (successor is None and self._slot_of.get(old) is slot
                    and not self.waits_for_predecessor(old)):
                self._handovers[old] = pid
                predecessor = old
                break
        self._slot_of[pid] = slot
        if slot in self._vacated:
            self._vacated.discard(slot)
            self._awaiting_boot.add(pid)
        return predecessor

    def asked_to_leave(self, pid: int) -> None:
        self._leaving.add(pid)

    def hands_over(self, pid: int) -> Slot | None:
        """``pid`` leaves on its own: its slot is vacated until a successor serves.
        Returns the slot (None if it holds none, or already leaves)."""
        slot = self._slot_of.get(pid)
        if slot is None or pid in self._handovers or pid in self._leaving:
            return None
        self._handovers[pid] = None
        self._vacated.add(slot)
        return slot

    def exited(self, pid: int, live: Container[int]) -> Slot | None:
        """A worker exited; returns its slot, vacated when nobody else holds it."""
        slot = self._slot_of.get(pid)
        if slot is not None and not any(
                other != pid and held is slot and other in live
                for other, held in self._slot_of.items()):
            self._vacated.add(slot)
        self._awaiting_boot.discard(pid)
        return slot

    def serves(self, pid: int) -> None:
        """A staying worker was seen serving (or, never vacated, is about to)."""
        self._awaiting_boot.discard(pid)
        slot = self._slot_of.get(pid)
        if slot is not None:
            self._stranded.pop(slot, None)

    def drain(self, slots: Iterable[Slot]) -> None:
        self._draining.update(slots)

    def keep_stranded(self, slot: Slot, until: float) -> float:
        """A drained slot has connections queued and no worker: keep it for the next
        new worker until ``until`` (or the deadline it already has); returns it."""
        return self._stranded.setdefault(slot, until)

    def drained(self, slot: Slot) -> None:
        """No worker holds the draining slot any more: it is no longer draining (it
        is then retired, kept stranded, or kept for a new worker)."""
        self._draining.discard(slot)

    def retired(self, slot: Slot) -> None:
        self._draining.discard(slot)
        self._stranded.pop(slot, None)
