"""The plugin in the master: one coordinator the Gunicorn wrappers call.

:mod:`gunicorn_prefork.arbiter_hook` calls one :class:`Master` method per arbiter
event; each delegates the decision to the module that owns it and does the I/O:

=================================  ==============================================
:mod:`~gunicorn_prefork.slots`     the slot table (the sockets)
:mod:`~.assignment`                which worker serves which slot
:mod:`~.handover`                  successors for workers leaving on their own
:mod:`~.retiring`                  draining and closing surplus slots
:mod:`~.steering`                  which slots take new connections (policy), cBPF
:mod:`~.boot_watch`                which workers have booted
:mod:`~.recovery`                  crash counting, halt, back-off
:mod:`~.fork_plan`                 what the child gets at its fork
=================================  ==============================================

Invariants: the master halts only from its main loop (``manage_workers``), never
from a signal handler or a hook; :meth:`Master.on_reaped` may run inside Gunicorn's
SIGCHLD handler (20.1 to 23), so it only records and never steers or forks; every
fork the plugin makes goes through Gunicorn's ``spawn_worker`` (so ``pre_fork``,
``post_fork`` and the worker bookkeeping are Gunicorn's own).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import _gunicorn, fork_plan, handover, stall_watch, steering
from . import settings as settings_mod
from .assignment import SlotAssignment
from .boot_watch import BootWatch
from .errors import OverRecoveryError, PreforkError
from .plugin_log import PluginLog
from .progress import ProgressPage
from .recovery import Crash, ExitKind, Recovery, Replacement, classify, describe_status
from .retiring import DRAIN_SECONDS, Retirement, queued_on
from .settings import PreforkSettings
from .slots import Slot, SlotTable, check_reuseport_possible
from .stall_watch import StallWatch

#: Signals with which the master tells a worker to go (stop, reload, TTOU, timeout).
LEAVE_SIGNALS = frozenset({signal.SIGTERM, signal.SIGQUIT, signal.SIGINT,
                           signal.SIGKILL, signal.SIGABRT})


def _slot_text(slot: Slot | None) -> str:
    return f" on slot {slot.number}" if slot is not None else ""


class Master:
    """The plugin's state in one Gunicorn master process."""

    def __init__(self, arbiter: Any) -> None:
        self.server = _gunicorn.ArbiterView(arbiter)
        self.pid = os.getpid()
        self.settings: PreforkSettings = settings_mod.load(arbiter.cfg)
        self.log = PluginLog(self.settings.logger or arbiter.log)
        self.reuseport = self.settings.reuseport
        self.table: SlotTable | None = None
        self.slots = SlotAssignment()
        self.retirement = Retirement()
        self.steerer = steering.Steerer()
        self.boot = BootWatch()
        self.recovery = Recovery(self.settings.recover_threshold,
                                 self.settings.recover_window)
        self.ready = False
        self.progress = ProgressPage()
        self.stalls = StallWatch(self.settings.stall_threshold, self.progress)
        self.group: steering.Group | None = None
        self._applying = self._dirty = False

    # -- configuration -------------------------------------------------------------

    def prepare_start(self) -> None:
        """Before Gunicorn's ``start()``: refuse impossible set-ups, own the sockets."""
        if not self.reuseport:
            self.log.info("prefork_reuseport is off: serving Gunicorn's shared socket")
            return
        check_reuseport_possible(self.server.cfg.address)
        self._take_over_reuse_port()

    def _take_over_reuse_port(self) -> None:
        """Gunicorn 24+ binds per worker when ``reuse_port`` is set: we own the sockets."""
        if self.server.cfg.reuse_port:
            self.log.info("Gunicorn's reuse_port is ignored: the master owns the "
                          "SO_REUSEPORT sockets")
            _gunicorn.turn_off_reuse_port(self.server.cfg)

    def reload_settings(self) -> None:
        """After a HUP built a new Config: read the settings again, keep the mode."""
        try:
            new = settings_mod.load(self.server.cfg)
        except PreforkError as error:
            self.log.error("%s; keeping the previous prefork settings", error)
            new = self.settings
        if new.reuseport != self.reuseport:
            self.log.warning("prefork_reuseport changed to %s: this takes effect on a "
                             "restart (USR2 or stop/start); keeping %s",
                             new.reuseport, self.reuseport)
        self.settings = new
        self.log = PluginLog(new.logger or self.server.log)
        self.recovery.configure(new.recover_threshold, new.recover_window)
        if self.reuseport:
            self._take_over_reuse_port()
            self.stalls.threshold = new.stall_threshold
            self._watch_stalls()

    # -- listeners -----------------------------------------------------------------

    def create_listeners(self, cfg: Any, fds: Sequence[int] | None) -> list[Any]:
        """Replaces ``gunicorn.sock.create_sockets`` in the master."""
        count = max(1, self.server.num_workers or 1)
        held: list[Any] = []
        if self.table is not None:  # a HUP changed the binds: start a new table
            held = list(self.table.addresses)
            self.table.close()
        if fds:
            self.table = SlotTable.adopt(cfg, self.log, fds)
            self.log.info("adopted %d slot(s) on %s", len(self.table.slots),
                          self.table.describe())
            # Gunicorn passes systemd sockets on USR2 as LISTEN_FDS=3..n; ours are
            # spread over other numbers, so let it use GUNICORN_FD instead.
            self.server.forget_systemd()
            self.table.ensure(count)
        else:
            check_reuseport_possible(cfg.address)
            self.table = SlotTable.create(cfg, self.log, cfg.address, count, held)
        for bind, address in zip(cfg.address, self.table.addresses):
            if not fds and bind[1] == 0:
                self.log.info("port 0 of %s resolved to %s", bind[0], address[1])
        self.log.info("%d SO_REUSEPORT listener(s) per bind, one per worker, on %s",
                      len(self.table.slots), self.table.describe())
        self.slots.clear()
        self.retirement.clear()
        self.steerer.reset()  # a new group: no program attached yet
        self.group = None
        self._watch_stalls()
        return self.table.listeners()

    def _watch_stalls(self) -> None:
        """Run the stall watch's timer while ``prefork_stall_threshold`` is on."""
        if self.stalls.threshold > 0 and self.table is not None:
            stall_watch.start_timer(self.stalls.threshold, self._on_tick, self._stall_summary)
        else:
            stall_watch.stop_timer()
            self.stalls.stalled = frozenset()

    def _sync_listeners(self) -> None:
        """Gunicorn's ``LISTENERS`` follow the table: USR2 passes them on, stop closes them."""
        if self.table is not None:
            self.server.listeners = self.table.listeners()

    # -- workers ---------------------------------------------------------------------

    def _choose_slot(self) -> Slot:
        assert self.table is not None
        if len(self.table.slots) < self.server.num_workers:
            self.table.ensure(self.server.num_workers)
            self._sync_listeners()
        self.slots.prune(self.server.workers())
        return self.slots.choose(self.table.slots, self.retirement.draining,
                                 self.retirement.stranded)

    def spawn(self, spawn_worker: Callable[[], Any]) -> Any:
        """Run Gunicorn's ``spawn_worker`` with the chosen slot as the worker's sockets."""
        slot: Slot | None = None
        if self.reuseport and self.table is not None:
            slot = self._choose_slot()
        live_slots = self.table.slots if self.table is not None else []
        replacement = self.recovery.take_replacement(slot, live_slots)
        delay = max(0.0, replacement.not_before - time.monotonic()) if replacement else 0.0
        others = [listener for other in live_slots if other is not slot
                  for listener in other.sockets] if slot is not None else []
        shared = self.server.listeners
        if slot is not None:
            self.server.listeners = slot.sockets
        fork_plan.arm(fork_plan.ChildPlan(
            self.pid, others, delay, self.log, self.progress,
            self.progress.index_for(slot) if slot is not None else None))
        try:
            pid = spawn_worker()
        finally:
            fork_plan.disarm()
            self.server.listeners = shared
        if not isinstance(pid, int):
            return pid
        worker = self.server.workers().get(pid)
        self.boot.note_spawned(pid, worker, replacement.not_before if replacement else 0.0)
        if slot is not None:
            predecessor = self.slots.assign(pid, slot)
            if predecessor is not None:
                self.log.info("worker %s takes over slot %d from worker %s, which "
                              "accepts until it serves", pid, slot.number, predecessor)
            self.log.debug("worker %s serves slot %d", pid, slot.number)
        if replacement is not None:
            self._recovered(replacement, worker)
        return pid

    def _recovered(self, replacement: Replacement, worker: Any) -> None:
        old = replacement.old_worker
        self.log.info("worker %s replaces crashed worker %s%s", getattr(worker, "pid", "?"),
                      old.pid, _slot_text(replacement.slot))
        self._metric("gunicorn.prefork.recoveries")
        self._call_hook("prefork_on_recover", self.settings.on_recover,
                        self.server.arbiter, old, worker)

    def note_kill(self, pid: int, sig: int) -> None:
        if sig in LEAVE_SIGNALS:
            self.slots.asked_to_leave(pid)

    # -- leaving on its own: overlap with the successor ------------------------------

    def start_handovers(self) -> None:
        """From the main loop: fork successors for workers leaving on their own."""
        handover.start(self.server, self.slots, self.log)

    def defers_kill(self, pid: int, sig: int) -> bool:
        """Hold back the SIGTERM for a worker handing over until its successor serves."""
        return handover.defers_kill(self.server, self.slots, self.boot, pid, sig)

    # -- retiring slots ----------------------------------------------------------------

    def drain_surplus(self) -> None:
        """Before Gunicorn stops surplus workers (TTOU, fewer workers after HUP):
        steer away from the slots that lose their worker, give them ``DRAIN_SECONDS``."""
        if self.table is None:
            return
        self.slots.prune(self.server.workers())
        chosen = self.retirement.choose_drained(self.table, self.server.workers(),
                                                self.server.num_workers, self.slots)
        if not chosen:
            return
        self.retirement.draining.update(chosen)
        self.steer()
        self.log.info("draining slot(s) %s for %.1fs before their workers stop",
                      ", ".join(str(slot.number) for slot in chosen), DRAIN_SECONDS)
        time.sleep(DRAIN_SECONDS)

    def settle_drained(self) -> None:
        """Close drained slots no worker holds any more, then steer. Runs before and
        after Gunicorn manages its workers, so a new worker never doubles up on a
        busy slot."""
        if self.table is None:
            return
        self.retirement.settle(self.table, self.server.workers(), self.server.num_workers,
                               float(self.server.cfg.graceful_timeout), self.slots,
                               self.log, self._sync_listeners)
        self.steer()

    # -- steering --------------------------------------------------------------------

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

    def steer(self) -> None:
        """New connections only to serving slots; plain hashing when all (or none) serve."""
        table = self.table
        if table is None or not table.slots:
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
        if group is not None and self.stalls.tick(time.monotonic(), group.watched):
            try:
                self._apply()
            except OSError:
                pass  # the main loop's next steer() reports it

    def report_stalls(self) -> None:
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
            self._metric("gunicorn.prefork.stalls")
        gauge = getattr(self.server.log, "gauge", None)
        if callable(gauge) and self.table is not None:
            for slot in self.table.slots:
                gauge(f"gunicorn.prefork.slot.{slot.number}.queued", queued_on(slot))

    def _stall_summary(self) -> None:
        """When the watch stops (the master exits): how many stalls it saw."""
        self.log.info("stall watch: %d stall(s) of slots seen (prefork_stall_threshold = "
                      "%gs)", self.stalls.total, self.stalls.threshold)

    def _worker_on(self, number: int) -> str:
        pids = [str(pid) for pid, slot in self.slots.staying().items() if slot.number == number]
        return ",".join(pids) or "?"

    # -- exits and recovery ------------------------------------------------------------

    def on_reaped(self, pid: int, status: int) -> None:
        """Gunicorn just reaped ``pid``; may run inside a signal handler (20.1 to 23).

        So it only records: it may interrupt the main loop in the middle of the
        plugin's own bookkeeping. Steering away from the slot follows at once from
        the main loop, which Gunicorn wakes after every reap.
        """
        workers = self.server.workers()
        worker = workers.get(pid)
        if worker is None:
            return
        booted = self.boot.update(pid, worker)
        kind = classify(status, asked=pid in self.slots.leaving,
                        aborted=_gunicorn.was_aborted(worker), booted=booted)
        cause = describe_status(status) + ("" if booted else " before it booted")
        slot = self.slots.exited(pid, workers)  # its successor must boot before traffic
        self.boot.forget(pid)
        counted = kind is ExitKind.CRASH or (
            kind is ExitKind.TIMEOUT and self.settings.count_timeouts)
        if not counted:
            self.log.debug("worker %s%s %s (%s): not a crash", pid, _slot_text(slot),
                           cause, kind.value)
            return
        if kind is ExitKind.TIMEOUT:
            cause = f"timed out ({cause})"
        now = time.monotonic()
        recent = self.recovery.record(Crash(now, pid, cause), slot, worker,
                                      self.settings.recover_interval)
        self._metric("gunicorn.prefork.crashes")
        window = self.settings.recover_window
        self.log.warning("worker %s%s crashed: %s; %d crash(es) %s, "
                         "prefork_recover_threshold = %d", pid, _slot_text(slot), cause,
                         recent, f"within {window:g}s" if window > 0 else "since start",
                         self.recovery.crashes.threshold)

    def halt_if_over_threshold(self) -> None:
        """From the main loop, before workers are managed: the one place that halts."""
        if not self.recovery.take_halt():
            return
        error = OverRecoveryError(self.recovery.crashes.halt_message(time.monotonic()))
        self.log.error("%s", error)
        _gunicorn.halt("too many worker crashes (prefork_recover_threshold)",
                       error.exit_status)

    def check_ready(self) -> None:
        """Fire ``prefork_on_ready`` once, when all initial workers are serving."""
        if self.ready:
            return
        workers = dict(self.server.workers())  # a copy: 20.1-23 reap in a signal handler
        if len(workers) < self.server.num_workers:
            return
        if not all(self.boot.update(pid, worker) for pid, worker in workers.items()):
            return
        self.ready = True
        self.log.info("all %d workers are serving", len(workers))
        self._call_hook("prefork_on_ready", self.settings.on_ready, self.server.arbiter,
                        list(workers.values()))

    # -- hooks and metrics ------------------------------------------------------------

    def _call_hook(self, name: str, hook: Callable[..., object] | None, *args: Any) -> None:
        if hook is None:
            return
        try:
            hook(*args)
        except Exception as exc:  # a user's hook must not take the master down
            self.log.error("%s raised %s: %s", name, type(exc).__name__, exc)

    def _metric(self, name: str) -> None:
        """Count ``name`` on statsd when Gunicorn's statsd logger is active."""
        increment = getattr(self.server.log, "increment", None)
        if callable(increment):
            increment(name, 1)
