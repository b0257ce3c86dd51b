"""Keeping the group's cBPF program in line with the slots' states, stalls included.

The master calls :meth:`Steering.steer` from its main loop whenever workers
change (a worker serves, exits, drains, hands over): it looks at the workers'
heartbeats, builds the immutable :class:`~gunicorn_prefork.master.steering_program.Group` snapshot
and attaches the program :func:`~gunicorn_prefork.master.steering_program.allowed_indices` gives.
The stall watch (:mod:`gunicorn_prefork.master.stall_watch`), run by its own thread
(:mod:`gunicorn_prefork.master.watch_thread`) whenever a slot has something queued, reads
that snapshot and re-steers when the stalled set changes; on every tick it also has
:mod:`~gunicorn_prefork.master.rescue` move what is queued on stalled slots and on slots no
worker serves now to the slots that may take it.

Invariants: a tick and the main loop's :meth:`Steering.steer` never run at
the same time (both hold :attr:`Steering.lock`; the thread only tries it);
the watch never logs; only slots whose worker has booted are watched (early
connections still spread over workers that are booting). While two masters share
the slots (a USR2 overlap, :mod:`.overlap`) neither watches stalls and only the new
master steers. What the steering saw is worded and counted by
:mod:`.steering_report`; a worker's fork gets its share through
:meth:`Steering.for_child`.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import _gunicorn
from ..fork import progress
from ..fork.progress import ProgressPage
from . import master_thread, stall_watch, steering_program
from .boot_watch import BootWatch
from .overlap import Overlap
from .rebalancing import Rebalancing
from .rescue import Rescue, room_left
from .slot_states import SlotStates
from .slot_table import Slot, SlotTable
from .stall_watch import StallWatch
from .steering_report import SteeringReport
from .turnover import Turnover
from .watch_thread import WatchThread
from .worker_cpu import WorkerCpu


@dataclass(frozen=True)
class ChildShare:
    """What a worker forked for a slot gets of the steering: its counter in the
    shared page, its ends of the slot's rescue and hand-back channels, and what it
    must close."""

    progress: ProgressPage
    progress_index: int | None
    rescue_end: Any
    handback_end: Any
    close: tuple[Any, ...]


class Steering:
    """The attached program, the stall watch and the snapshot they share."""

    def __init__(self, server: _gunicorn.ArbiterView, states: SlotStates, boot: BootWatch,
                 stall_threshold: float, log: Any,
                 metric: Callable[[str, int], None]) -> None:
        self.server = server
        self.states = states
        self.boot = boot
        self.log = log
        self._metric = metric
        self.program = steering_program.AttachedProgram()
        self.progress = ProgressPage(progress.capacity_for(server.num_workers or 1))
        #: slots told to have no place in the page (warned once each)
        self._unwatched: set[Slot] = set()
        self.cpu = WorkerCpu()
        self.stalls = StallWatch(stall_threshold, self.progress,
                                 cpu=self.cpu.sample if self.cpu.available else None)
        self.rescue = Rescue()
        self.rescue.room = lambda slot: room_left(
            getattr(self.server.cfg, "worker_connections", None),
            self.progress.held_by(slot), self.rescue.unread(slot))
        self.rebalancing = Rebalancing(self.progress)
        self.turnover = Turnover()
        self.reporter = SteeringReport(self, metric)
        self.group: steering_program.Group | None = None
        #: held by a tick of the watch and by the main loop while it changes the group
        self.lock = threading.RLock()
        self._thread: WatchThread | None = None
        self._running = False
        #: the watch runs: it weighs slots by load as connections arrive (without it
        #: the main loop's look, about once a second, would keep a table built from a
        #: moment's counts)
        self._watching = False
        #: ``prefork_load_aware``
        self._load_aware = False
        self.overlap = Overlap()
        self._owner = os.getpid()
        self._summary_at_exit = False
        self._summarized = False

    def new_group(self) -> None:
        """A new slot table: nothing attached, nothing known."""
        with self.lock:
            self.program.reset()
            self.group = None

    def for_child(self, slot: Slot) -> ChildShare:
        """Before a worker for ``slot`` is forked (this opens what it needs)."""
        channel = self.rescue.channel_for(slot)
        index = self.progress.index_for(slot)
        if index is None and slot not in self._unwatched:
            self._unwatched.add(slot)
            self.log.warning("slot %d has no place in the shared page (%d slots, sized "
                             "for the workers at start): no stall watch, load steering "
                             "or shedding for it; restart (USR2) to size it anew",
                             slot.number, self.progress.capacity)
        return ChildShare(self.progress, index, channel.worker_end,
                          # no stall watch: no ask, and nobody takes a hand-back
                          self.rescue.handback_for(slot).worker_end
                          if self.stalls.threshold > 0 else None,
                          tuple(self.rescue.closed_in_child(slot)))

    def set_log(self, log: Any) -> None:
        """The plugin's logger changed (a HUP)."""
        self.log = log

    def set_load_aware(self, enabled: bool) -> None:
        """``prefork_load_aware`` (start, HUP): weigh slots by the connections they
        hold, and write rebalancing caps (or only zeros)."""
        with self.lock:
            self._load_aware = enabled
            self.rebalancing.enabled = enabled

    def set_stall_threshold(self, seconds: float) -> None:
        """``prefork_stall_threshold`` changed (a HUP); :meth:`watch` applies it."""
        with self.lock:
            self.stalls.threshold = seconds

    def watch(self, running: bool) -> None:
        """Run the stall watch while ``prefork_stall_threshold`` is on (and no other
        master shares the slots)."""
        self._running = running
        self._overlap()
        interval = stall_watch.tick_interval(self.stalls.threshold)
        if self.stalls.threshold > 0 and running and not self.overlap.sharing:
            if self._thread is None:
                self._thread = WatchThread(interval, self._on_tick, self._watched_fds,
                                           self.lock)
            if not self._summary_at_exit:
                self._summary_at_exit = True
                atexit.register(self.stop)  # an exit without Gunicorn's stop()
            self._thread.interval = interval
            self._thread.start()
            self._thread.wake()
            self._watching = True
        else:
            if self._thread is not None:
                self._thread.stop()
            with self.lock:
                self.stalls.stalled = frozenset()
                self._watching = False

    def stop(self) -> None:
        """The master stops (its workers are gone) or exits: stop the thread, say
        what it saw (once)."""
        if os.getpid() != self._owner:
            return  # a worker inherited the registration, not the thread
        if self._thread is not None:
            self._thread.stop()
        self._running = False
        if self.stalls.threshold > 0 and not self._summarized:
            self._summarized = True
            self.reporter.at_exit()

    def _watched_fds(self) -> list[int]:
        """What the watch thread sleeps on: every slot's listening sockets (readable
        when a connection is queued) and the rescue channels (a moved connection
        unread)."""
        group = self.group
        fds = [] if group is None else [
            listener.fileno() for watched in group.watched for listener in watched.slot.sockets]
        return fds + self.rescue.channel_fds()

    def _overlap(self) -> bool:
        """From the main loop: has a USR2 overlap started or ended? Returns whether
        this master began or stopped sharing its slots."""
        change = self.overlap.update(self.server.shares_slots(),
                                     self.server.started_new_master(), self.log)
        if change.new_master_gone:
            self.program.reset()  # whatever it attached last is not ours
        return change.sharing

    def _update_serving(self) -> tuple[set[Slot], dict[Slot, tuple[int, ...]]]:
        """Look at the staying workers' heartbeats; returns the slots with a staying
        worker that serves (or, starting for the first time, soon will), and those
        with one that has booted (only those can stall), with those workers."""
        workers = self.server.workers()
        self.states.prune(workers)
        serving: set[Slot] = set()
        booted: dict[Slot, tuple[int, ...]] = {}
        for pid, slot in self.states.staying().items():
            if pid not in workers:
                continue
            if self.boot.update(pid, workers[pid]):
                booted[slot] = (*booted.get(slot, ()), pid)
            elif self.states.is_awaiting_boot(pid):
                continue
            self.states.serves(pid)
            serving.add(slot)
        return serving, booted

    def steer(self, table: SlotTable) -> None:
        """New connections only to serving slots; plain hashing when all (or none) serve."""
        if not table.slots:
            return
        master_thread.resume_after_fork()  # a fork other than a worker's (USR2)
        if self._overlap():
            self.watch(self._running)
        with self.lock:
            before = self.group
            allowed = self._steer(table)
            changed = self.group != before
        if changed and self._thread is not None and self._thread.running:
            self._thread.wake()  # what it watches changed: look at the new slots
        if allowed is None:
            return
        if allowed:
            self.log.debug("new connections go to slot index(es) %s of %d",
                           steering_program.describe(allowed), len(table.slots))
        else:
            self.log.debug("new connections spread over all %d slots", len(table.slots))

    def _steer(self, table: SlotTable) -> tuple[int, ...] | None:
        serving, booted = self._update_serving()
        indices = {slot: index for index, slot in enumerate(table.slots)}
        self.progress.keep_only(table.slots)
        self.group = steering_program.Group(
            len(table.slots),
            serving=frozenset(indices[s] for s in serving if s in indices),
            draining=frozenset(indices[s] for s in self.states.draining if s in indices),
            stranded=frozenset(indices[s] for s in self.states.stranded if s in indices),
            num_workers=self.server.num_workers,
            attach_via=tuple(table.slots[0].sockets),
            watched=tuple(stall_watch.WatchedSlot(
                slot.number,
                self.progress.index_for(slot) if slot in booted else None, slot,
                booted.get(slot, ()))
                for index, slot in enumerate(table.slots)))
        self.cpu.keep_only(pid for pids in booted.values() for pid in pids)
        self.rescue.keep_only(table.slots, self._takers(self.group))
        if self.overlap.stepped_aside:
            return None  # the new master steers while it shares the slots with us
        try:
            return self._apply()
        except OSError as exc:
            self.log.warning("cannot steer connections (%s); the kernel's hash applies", exc)
            return None

    def _apply(self) -> tuple[int, ...] | None:
        """Attach the program for the current group and stalls; returns the allowed
        indices when the program changed. Runs under :attr:`lock` (the main loop's
        :meth:`steer`, or a tick of the watch thread), never from a signal handler."""
        group = self.group
        if group is None:
            return None
        weigh = self._watching and self._load_aware and not self._short(group)
        queued = self._queued(group) if weigh else {}
        held = self._held(group, queued) if weigh else {}
        table = group.table(self.stalls.stalled, held,
                            self._shedding(group) if weigh else (), queued)
        return table if self.program.apply(group.attach_via, table) else None

    def _short(self, group: steering_program.Group) -> bool:
        """Do connections come and go too fast to weigh slots by them (:mod:`.turnover`)?"""
        indices = [watched.progress for watched in group.watched
                   if watched.progress is not None]
        return self.turnover.update(time.monotonic(),
                                    sum(self.progress.taken(index) for index in indices),
                                    sum(self.progress.held(index) for index in indices))

    def _queued(self, group: steering_program.Group) -> dict[int, int]:
        """Connections queued on each booted slot now (by group index)."""
        return {index: watched.slot.queued() for index, watched in enumerate(group.watched)
                if watched.progress is not None}

    def _held(self, group: steering_program.Group,
              queued: dict[int, int]) -> dict[int, int]:
        """Connections on each booted slot now (by group index): those its worker's
        handlers hold, and those queued for it (the look was woken by a connection
        arriving, which its worker may not have taken yet)."""
        return {index: self.progress.held(watched.progress) + queued.get(index, 0)
                for index, watched in enumerate(group.watched)
                if watched.progress is not None}

    def _shedding(self, group: steering_program.Group) -> set[int]:
        """Slots (by group index) whose worker has a cap now (it ends keep-alive
        connections above it)."""
        return {index for index, watched in enumerate(group.watched)
                if watched.progress is not None and self.progress.cap(watched.progress)}

    def _on_tick(self, quiet_until: float | None) -> bool:
        """A tick of the watch thread (under :attr:`lock`): look at the slots,
        re-steer on change, move what waits; returns whether to look again soon."""
        group = self.group
        if group is None:
            return False
        if quiet_until is not None:
            self.stalls.quiet(quiet_until)
        self._tick(group)
        # load-aware, woken by a connection arriving: look once more, after its worker
        # took it (the load the program is built from may have missed it in between)
        again = quiet_until is not None and self._load_aware and not self.turnover.short
        return self.stalls.busy or bool(self.rescue.pending) or again

    def _tick(self, group: steering_program.Group) -> None:
        # a worker that handed back what it holds is stuck: its slot stalls now
        stuck = frozenset(slot.number for slot in self.rescue.collect())
        self.stalls.tick(time.monotonic(), group.watched, stuck)
        if not self.overlap.stepped_aside:
            # stalls, and the load: the program changes only when its table does
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

    def _takers(self, group: steering_program.Group) -> list[Any]:
        """The slots that may take connections the rescue moves now."""
        return [group.watched[index].slot for index in group.takers(self.stalls.stalled)]

    def report(self, table: SlotTable | None) -> None:
        """From the main loop: log and count what the stall watch saw."""
        self.reporter.report(table)
