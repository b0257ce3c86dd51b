"""A page shared by the master and its workers: each slot's progress and load.

The master maps one anonymous shared page before it forks any worker (so every
worker inherits the same memory) and gives each slot one *index* (handed to the
worker in its :class:`~gunicorn_prefork.fork.child_plan.ChildPlan`), which names its
numbers:

* its *progress* counter, which the worker bumps for every connection it takes on
  (as it accepts it and as its handler starts), from its event loop: it stops moving
  when the loop stalls or the worker's pool is full, and costs nothing while the
  worker is idle (no extra wake-ups);
* its *held* count: the connections the worker has taken on and not closed yet
  (keep-alive connections included), which the worker writes as it takes one on and
  as it closes one;
* its *cap*, written by the master: while the worker holds more connections than
  that, it ends keep-alive connections gracefully (0: no cap), and its *shed*
  counter, the connections it so ended (keep-alive rebalancing);
* its *taken* count: the connections the slot's workers took on since the slot got
  its index (accepted or passed in; the master's exit summary compares the slots).

All are plain memory writes (no syscall). The master only reads them (and writes
the cap): the stall watch compares progress counters, the steering weighs slots by
what they hold.

Invariants: an index belongs to at most one slot at a time (freed when the slot is
retired); counters wrap at 2**64; readers only compare them for equality; a held
count is the worker's last write (a torn read is impossible: one aligned 8-byte
word).
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence

#: Slots the page has room for at least (it is sized once, before the first fork:
#: see :func:`capacity_for`).
CAPACITY = 256

#: Numbers per slot (8 bytes each): progress, held, cap, shed, taken; laid out as
#: five arrays.
_FIELDS = 5
_PROGRESS, _HELD, _CAP, _SHED, _TAKEN = range(_FIELDS)


def capacity_for(workers: int) -> int:
    """Room for twice the workers Gunicorn starts with (TTIN, a HUP with more), at
    least :data:`CAPACITY` slots: 40 bytes a slot."""
    return max(CAPACITY, 2 * workers)


class ProgressPage:
    """The shared counters; :meth:`index_for` and :meth:`keep_only` run in the master only."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._map = mmap.mmap(-1, capacity * _FIELDS * 8)
        self._counters = memoryview(self._map).cast("Q")
        self._owners: dict[object, int] = {}  # slot (by identity) -> index
        self._free = list(range(capacity - 1, -1, -1))
        #: where each field's array starts
        self._progress_at, self._held_at, self._cap_at, self._shed_at, self._taken_at = (
            field * capacity for field in range(_FIELDS))

    def index_for(self, slot: object) -> int | None:
        """The slot's counter (allocated on first use); None when the page is full."""
        index = self._owners.get(slot)
        if index is None and self._free:
            index = self._owners[slot] = self._free.pop()
            for field in (_HELD, _CAP, _SHED, _TAKEN):  # a retired slot's are not its
                self._counters[field * self.capacity + index] = 0
        return index

    def keep_only(self, slots: Sequence[object]) -> None:
        """Free the counters of slots no longer in the table."""
        live = set(slots)
        for owner in [owner for owner in self._owners if owner not in live]:
            self._free.append(self._owners.pop(owner))

    def read(self, index: int) -> int:
        return int(self._counters[self._progress_at + index])

    def bump(self, index: int) -> None:
        """Worker: its loop moved (a connection's handler started, a probe answered)."""
        self._counters[self._progress_at + index] = (
            self._counters[self._progress_at + index] + 1) & 0xFFFFFFFFFFFFFFFF

    def took(self, index: int) -> None:
        """Worker: one more connection taken on (progress, and the taken count)."""
        self.bump(index)
        self._counters[self._taken_at + index] = (
            self._counters[self._taken_at + index] + 1) & 0xFFFFFFFFFFFFFFFF

    def taken(self, index: int) -> int:
        """The connections the slot's workers took on since it got its index."""
        return int(self._counters[self._taken_at + index])

    def held(self, index: int) -> int:
        """The connections the slot's worker last said it holds."""
        return int(self._counters[self._held_at + index])

    def held_by(self, slot: object) -> int | None:
        """What ``slot``'s worker last said it holds; None for a slot without a
        counter."""
        index = self.index_for(slot)
        return None if index is None else self.held(index)

    def set_held(self, index: int, count: int) -> None:
        """Worker: it holds ``count`` connections now."""
        self._counters[self._held_at + index] = max(0, count)

    def cap(self, index: int) -> int:
        """Above how many held connections the worker ends keep-alive ones (0: none)."""
        return int(self._counters[self._cap_at + index])

    def set_cap(self, index: int, count: int) -> None:
        """Master: the slot's cap (0: no cap)."""
        self._counters[self._cap_at + index] = max(0, count)

    def shed(self, index: int) -> int:
        """Keep-alive connections the slot's workers ended to rebalance, so far."""
        return int(self._counters[self._shed_at + index])

    def count_shed(self, index: int) -> None:
        """Worker: one keep-alive connection ended to rebalance."""
        self._counters[self._shed_at + index] += 1
