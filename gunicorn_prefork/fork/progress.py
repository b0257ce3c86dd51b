"""A page of counters shared by the master and its workers: each slot's accept progress.

The master maps one anonymous shared page before it forks any worker (so every
worker inherits the same memory) and gives each slot one counter (an *index*,
handed to the worker in its :class:`~gunicorn_prefork.fork.child_plan.ChildPlan`). A
worker bumps its slot's counter for every connection it takes on (as it accepts it
and as its handler starts), from its event loop: the counter stops moving when the
loop stalls or the worker's pool is full (it stops accepting), and costs nothing
while the worker is idle (no extra wake-ups). The master only reads.

Invariants: an index belongs to at most one slot at a time (freed when the slot is
retired); counters wrap at 2**64; readers only compare for equality.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence

#: Counters in the page (one per slot; 8 bytes each).
CAPACITY = mmap.PAGESIZE // 8


class ProgressPage:
    """The shared counters; :meth:`index_for` and :meth:`keep_only` run in the master only."""

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, CAPACITY * 8)
        self._counters = memoryview(self._map).cast("Q")
        self._owners: dict[int, int] = {}  # id(slot) -> index
        self._free = list(range(CAPACITY - 1, -1, -1))

    def index_for(self, slot: object) -> int | None:
        """The slot's counter (allocated on first use); None when the page is full."""
        index = self._owners.get(id(slot))
        if index is None and self._free:
            index = self._owners[id(slot)] = self._free.pop()
        return index

    def keep_only(self, slots: Sequence[object]) -> None:
        """Free the counters of slots no longer in the table."""
        live = {id(slot) for slot in slots}
        for owner in [owner for owner in self._owners if owner not in live]:
            self._free.append(self._owners.pop(owner))

    def read(self, index: int) -> int:
        return int(self._counters[index])

    def bump(self, index: int) -> None:
        """Worker: one more connection taken on."""
        self._counters[index] = (self._counters[index] + 1) & 0xFFFFFFFFFFFFFFFF
