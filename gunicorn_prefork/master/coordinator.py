"""The plugin in the master: one coordinator the Gunicorn wrappers call.

:mod:`gunicorn_prefork.master.arbiter_hook` calls one :class:`Master` method per arbiter
event; each delegates the decision to the module that owns it (listed in
:mod:`gunicorn_prefork.master`) and does the I/O.

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

import gunicorn

from .. import _gunicorn
from ..config import settings as settings_mod
from ..config import tested_versions
from ..config.logger import PluginLog
from ..config.reuseport import check_reuseport_possible
from ..config.settings import PreforkSettings
from ..errors import OverRecoveryError, PreforkError
from ..fork import child_plan
from . import handover, master_thread, retiring
from .boot_watch import BootWatch
from .counting import Counts
from .recovery import Crash, ExitKind, Recovery, Replacement, classify, describe_status
from .retiring import DRAIN_SECONDS
from .slot_states import SlotStates
from .slot_table import Slot, SlotTable
from .status import StatusEndpoint
from .steering import Steering

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
        #: the one owner of the slot and worker states (see :mod:`.slot_states`)
        self.states = SlotStates()
        self.boot = BootWatch()
        self.recovery = Recovery(self.settings.recover_threshold,
                                 self.settings.recover_window)
        self.ready = False
        self.counts = self._metric = Counts(self.server)
        self.steering = Steering(self.server, self.states, self.boot,
                                 self.settings.stall_threshold, self.log, self._metric)
        self.steering.set_load_aware(self.settings.load_aware)
        self.status: StatusEndpoint | None = None

    # -- configuration -------------------------------------------------------------

    def prepare_start(self) -> None:
        """Before Gunicorn's ``start()``: refuse impossible set-ups, own the sockets,
        bind the status endpoint."""
        if self.settings.status_bind is not None:
            self.status = StatusEndpoint(self, self.settings.status_bind)
        if not self.reuseport:
            return
        check_reuseport_possible(self.server.cfg.address)
        self._take_over_reuse_port()

    def _take_over_reuse_port(self) -> None:
        """Gunicorn 24+ binds per worker when ``reuse_port`` is set: we own the sockets."""
        if self.server.cfg.reuse_port:
            self.log.info("Gunicorn's reuse_port is ignored: the master owns the "
                          "SO_REUSEPORT sockets")
            _gunicorn.turn_off_reuse_port(self.server.cfg)

    def warn_at_start(self) -> None:
        """A Gunicorn outside the tested range (it still runs); then the settings."""
        untested = tested_versions.untested(gunicorn.version_info)
        if untested is not None:
            self.log.warning("%s", untested)
        self.warn_unknown_settings()

    def warn_unknown_settings(self) -> None:
        """One warning per misspelt ``prefork_*`` name (ignored, as Gunicorn would)."""
        for unknown in settings_mod.unknown_names(self.server.cfg):
            self.log.warning("%s", unknown.message())

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
        if new.status_bind != self.settings.status_bind:
            self.log.warning("prefork_status_bind changed to %r: this takes effect on a "
                             "restart (USR2 or stop/start)", new.status_bind)
        changed = settings_mod.changes(self.settings, new)
        self.settings = new
        self.log = PluginLog(new.logger or self.server.log)
        if changed:
            self.log.info("settings changed on reload: %s", "; ".join(changed))
        self.warn_unknown_settings()
        self.recovery.configure(new.recover_threshold, new.recover_window)
        if self.reuseport:
            self._take_over_reuse_port()
            self.steering.set_stall_threshold(new.stall_threshold)
            self.steering.set_load_aware(new.load_aware)
            self.steering.watch(running=self.table is not None)
        self.steering.set_log(self.log)

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
        self.states.new_table()
        self.steering.new_group()  # a new group: no program attached yet
        self.steering.watch(running=True)
        return self.table.listeners()

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
        self.states.prune(self.server.workers())
        return self.states.choose(self.table.slots)

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
        share = self.steering.for_child(slot) if slot is not None else None
        if share is not None:
            others += share.close
        child_plan.arm(child_plan.ChildPlan(self.pid, others, delay, self.log, *(
            (share.progress, share.progress_index, share.rescue_end, share.handback_end)
            if share is not None else ())))
        try:
            pid = spawn_worker()
        finally:
            child_plan.disarm()
            self.server.listeners = shared
            master_thread.resume_after_fork()  # the fork stopped the master's threads
        if not isinstance(pid, int):
            return pid
        worker = self.server.workers().get(pid)
        self.boot.note_spawned(pid, worker, replacement.not_before if replacement else 0.0)
        if slot is not None:
            predecessor = self.states.assigned(pid, slot)
            if predecessor is not None:
                self.log.info("worker %s takes over slot %d from worker %s, which "
                              "finishes what it holds and exits", pid, slot.number,
                              predecessor)
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
            self.states.asked_to_leave(pid)

    # -- leaving on its own: overlap with the successor ------------------------------

    def start_handovers(self) -> None:
        """From the main loop: fork successors for workers leaving on their own."""
        self._metric("gunicorn.prefork.recycles",
                     handover.start(self.server, self.states, self.log))

    def swallows_kill(self, pid: int, sig: int) -> bool:
        """Gunicorn's SIGTERM for a worker that leaves on its own is not sent."""
        return handover.swallows_kill(self.states, pid, sig)

    # -- retiring slots ----------------------------------------------------------------

    def drain_surplus(self) -> None:
        """Before Gunicorn stops surplus workers (TTOU, fewer workers after HUP):
        steer away from the slots that lose their worker, give them ``DRAIN_SECONDS``."""
        if self.table is None:
            return
        self.states.prune(self.server.workers())
        chosen = retiring.choose_drained(self.states, self.table, self.server.workers(),
                                         self.server.num_workers)
        if not chosen:
            return
        self.states.drain(chosen)
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
        retiring.settle(self.states, self.table, self.server.workers(),
                        self.server.num_workers, float(self.server.cfg.graceful_timeout),
                        self.log, self._sync_listeners, self.server.shares_slots())
        self.steer()

    # -- steering --------------------------------------------------------------------

    def steer(self) -> None:
        """New connections only to serving, non-stalled slots (see .steering)."""
        if self.table is not None:
            self.steering.steer(self.table)

    def report_stalls(self) -> None:
        """From the main loop: log and count what the stall watch saw."""
        self.steering.report(self.table)

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
        kind = classify(status, asked=self.states.is_leaving(pid),
                        aborted=_gunicorn.was_aborted(worker), booted=booted)
        cause = describe_status(status) + ("" if booted else " before it booted")
        slot = self.states.exited(pid, workers)  # its successor must boot before traffic
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
        workers = self.server.workers()
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
