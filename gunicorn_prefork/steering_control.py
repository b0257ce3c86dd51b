"""Keeping the group's cBPF program in line with the slots' states, stalls included.

The master calls :meth:`SteeringControl.steer` from its main loop whenever workers
change (a worker serves, exits, drains, hands over): it looks at the workers'
heartbeats, builds the immutable :class:`~gunicorn_prefork.steering.Group` snapshot
and attaches the program :func:`~gunicorn_prefork.steering.allowed_indices` gives.
The stall watch's timer (:mod:`gunicorn_prefork.stall_watch`, a SIGALRM handler)
reads that snapshot between two of the main loop's bytecodes and re-steers when the
stalled set changes; on every tick it also has :mod:`~gunicorn_prefork.rescue` move
what is queued on stalled slots and on slots no worker serves now to the slots that
may take it.

Invariants: the timer never logs and only reads the snapshot; :meth:`_apply` is
re-entrancy safe (a tick that lands inside the main loop's own ``_apply`` makes that
call redo its work with the latest state, so the last program attached always
reflects the latest group and stalls); only slots whose worker has booted are
watched (early connections still spread over workers that are booting).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from . import _gunicorn, stall_watch, steering
from .assignment import SlotAssignment
from .boot_watch import BootWatch
from .progress import ProgressPage
from .rescue import Rescue
from .retiring import Retirement, queued_on
from .slots import SlotTable
from .stall_watch import StallWatch


class SteeringControl:
    """The attached program, the stall watch and the snapshot they share."""

    def __init__(self, server: _gunicorn.ArbiterView, slots: SlotAssignment,
                 retirement: Retirement, boot: BootWatch, stall_threshold: float,
                 log: Any, metric: Callable[[str, int], None]) -> None:
        self.server = server
        self.slots = slots
        self.retirement = retirement
        self.boot = boot
        self.log = log
        self._metric = metric
        self.steerer = steering.Steerer()
        self.progress = ProgressPage()
        self.stalls = StallWatch(stall_threshold, self.progress)
        self.rescue = Rescue()
        self._moved_counted = 0
        self.group: steering.Group | None = None
        self._applying = self._dirty = False
        self._ticking = False

    def new_group(self) -> None:
        """A new slot table: nothing attached, nothing known."""
        self.steerer.reset()
        self.group = None

    def watch(self, running: bool) -> None:
        """Run the stall watch's timer while ``prefork_stall_threshold`` is on."""
        if self.stalls.threshold > 0 and running:
            stall_watch.start_timer(self.stalls.threshold, self._on_tick, self._stall_summary)
        else:
            stall_watch.stop_timer()
            self.stalls.stalled = frozenset()

    def _update_serving(self) -> tuple[set[int], set[int]]:
        """Look at the staying workers' heartbeats; returns the ids of the slots with a
        staying worker that serves (or, starting for the first time, soon will), and
        of those with one that has booted (only those can stall)."""
        workers = self.server.workers()
        self.slots.prune(workers)
        serving, booted = set(), set()
        for pid, slot in self.slots.staying().items():
            if pid not in workers:
                continue
            if self.boot.update(pid, workers[pid]):
                booted.add(id(slot))
            elif pid in self.slots.awaiting_boot:
                continue
            self.slots.awaiting_boot.discard(pid)
            serving.add(id(slot))
            self.retirement.stranded.pop(slot, None)
        return serving, booted

    def steer(self, table: SlotTable) -> None:
        """New connections only to serving slots; plain hashing when all (or none) serve."""
        if not table.slots:
            return
        serving, booted = self._update_serving()
        indices = {id(slot): index for index, slot in enumerate(table.slots)}
        self.progress.keep_only(table.slots)
        serving_indices = frozenset(indices[i] for i in serving if i in indices)
        self.group = steering.Group(
            len(table.slots), serving_indices,
            draining=frozenset(indices[id(s)] for s in self.retirement.draining
                               if id(s) in indices),
            stranded=frozenset(indices[id(s)] for s in self.retirement.stranded
                               if id(s) in indices),
            num_workers=self.server.num_workers,
            attach_via=tuple(table.slots[0].sockets),
            watched=tuple(stall_watch.WatchedSlot(
                slot.number,
                self.progress.index_for(slot) if id(slot) in booted else None, slot)
                for index, slot in enumerate(table.slots)))
        self.rescue.keep_only(table.slots, self._takers(self.group))
        try:
            allowed = self._apply()
        except OSError as exc:
            self.log.warning("cannot steer connections (%s); the kernel's hash applies", exc)
            return
        if allowed is None:
            return
        if allowed:
            self.log.debug("new connections go to slot index(es) %s of %d",
                           list(allowed), len(table.slots))
        else:
            self.log.debug("new connections spread over all %d slots", len(table.slots))

    def _apply(self) -> tuple[int, ...] | None:
        """Attach the program for the current group and stalls; returns the allowed
        indices when the program changed. The stall timer may run this in the middle
        of the main loop's own call: that one then redoes it with the latest state."""
        if self._applying:
            self._dirty = True
            return None
        self._applying = True
        try:
            changed: tuple[int, ...] | None = None
            self._dirty = True
            while self._dirty:
                self._dirty = False
                group = self.group
                if group is None:
                    break
                allowed = group.allowed(self.stalls.stalled)
                if self.steerer.apply(group.attach_via, allowed):
                    changed = allowed
            return changed
        finally:
            self._applying = False

    def _on_tick(self) -> None:
        """The stall timer (a signal handler): look at the slots, re-steer on change."""
        group = self.group
        if group is None or self._ticking:
            return  # (a tick slower than the interval: the next signal comes inside it)
        self._ticking = True
        try:
            self._tick(group)
        finally:
            self._ticking = False

    def _tick(self, group: steering.Group) -> None:
        if self.stalls.tick(time.monotonic(), group.watched):
            try:
                self._apply()
            except OSError:
                pass  # the main loop's next steer() reports it
        stalled = self.stalls.stalled
        targets = self._takers(group)
        # every tick, also without stalls: the rescue learns which stalls ended
        self.rescue.tick([group.watched[index].slot for index in sorted(stalled)], targets)
        if targets:  # no worker takes these on now: a crashed one's, a stranded slot's
            for index in group.unserved():
                self.rescue.move_unserved(group.watched[index].slot, targets)

    def _takers(self, group: steering.Group) -> list[Any]:
        """The slots that may take connections the rescue moves now."""
        return [group.watched[index].slot for index in group.takers(self.stalls.stalled)]

    def report(self, table: SlotTable | None) -> None:
        """From the main loop: log and count what the stall watch saw."""
        for event in self.stalls.take_events():
            worker = self._worker_on(event.slot_number)
            if event.kind == "started":
                self.log.warning("worker %s on slot %d takes no connections for %.1fs, "
                                 "%d queued: new connections go to the other slots",
                                 worker, event.slot_number, event.seconds, event.queued)
            elif event.kind == "ended":
                self.log.info("worker %s on slot %d takes connections again after a "
                              "%.1fs stall", worker, event.slot_number, event.seconds)
            self._metric("gunicorn.prefork.stalls", 1)
        if self.rescue.moved > self._moved_counted:
            self._metric("gunicorn.prefork.moved", self.rescue.moved - self._moved_counted)
            self._moved_counted = self.rescue.moved
        gauge = getattr(self.server.log, "gauge", None)
        if callable(gauge) and table is not None:
            for slot in table.slots:
                gauge(f"gunicorn.prefork.slot.{slot.number}.queued", queued_on(slot))

    def _stall_summary(self) -> None:
        """When the watch stops (the master exits): how many stalls it saw."""
        self.log.info("stall watch: %d stall(s) of slots seen, %d queued connection(s) "
                      "moved to other workers (prefork_stall_threshold = %gs)",
                      self.stalls.total, self.rescue.moved, self.stalls.threshold)

    def _worker_on(self, number: int) -> str:
        pids = [str(pid) for pid, slot in self.slots.staying().items() if slot.number == number]
        return ",".join(pids) or "?"

