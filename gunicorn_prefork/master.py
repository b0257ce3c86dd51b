"""What the plugin does in the master, one method per arbiter event.

:mod:`gunicorn_prefork.arbiter_hook` calls these from Gunicorn's ``Arbiter`` methods;
this module holds the state: the settings of the current configuration, the slot
table, which worker serves which slot, and which workers the master asked to leave.

Slot assignment: a new worker takes the slot with the fewest *staying* workers (live
and not asked to leave), lowest number first. A replacement thus lands on the slot
its predecessor left, and on HUP each slot gets one new worker while the old one
finishes. When there are more slots than ``num_workers`` (TTOU, fewer workers after
HUP), the slots of the workers Gunicorn is about to stop are drained first (new
connections steered away while their workers still accept, for ``DRAIN_SECONDS``),
then closed once those workers are gone.

Steering (see :mod:`gunicorn_prefork.steering`): a slot whose worker exited (a
crash, ``max_requests``) is skipped by new connections until its replacement has
booted, so nobody waits for a worker that is not there; so is a slot that drains.
Slots of workers starting for the first time (start-up, HUP, TTIN) are not skipped:
steering them away until each booted would hand every early connection, keep-alive
ones for good, to whichever worker booted first. With every slot serving (or none)
the kernel's plain hash applies.

Recovery (see :mod:`gunicorn_prefork.recovery`): every reaped worker is classified;
crashes are counted and, past the threshold, the master halts from the main loop
(never from a signal handler or ``child_exit``). A crashed worker's replacement is
forked at once but waits ``prefork_recover_interval`` in the child before it boots,
so the master's loop, and its signal handling, never wait.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gunicorn.errors import HaltServer

from . import handoff, steering
from . import settings as settings_mod
from .child import mark_child
from .errors import EXIT_STARTUP_ERROR, OverRecoveryError, PreforkError
from .plugin_log import PluginLog
from .recovery import Crash, CrashCounter, ExitKind, classify, describe_status
from .settings import PreforkSettings
from .slots import Slot, SlotTable, check_reuseport_possible, queued

#: Signals with which the master tells a worker to go (stop, reload, TTOU, timeout).
LEAVE_SIGNALS = frozenset({signal.SIGTERM, signal.SIGQUIT, signal.SIGINT,
                           signal.SIGKILL, signal.SIGABRT})

#: How long a slot about to close keeps its worker accepting after new connections
#: are steered away: handshakes already in flight land in its queue and are served.
#: The master waits this long, once per TTOU (or smaller HUP), before stopping workers.
DRAIN_SECONDS = 0.3


def fail_startup(log: Any, cfg: Any, error: PreforkError) -> None:
    """One clear line, Gunicorn's start-up exit status, no traceback."""
    log.error("Error: %s", error)
    if getattr(cfg, "errorlog", "-") != "-":
        print(f"Error: {error}", file=sys.stderr, flush=True)
    sys.exit(EXIT_STARTUP_ERROR)


@dataclass
class _Replacement:
    """A crashed worker waiting for its successor."""

    slot: Slot | None
    old_worker: Any
    not_before: float


class Master:
    """The plugin's state in one Gunicorn master process."""

    def __init__(self, arbiter: Any) -> None:
        self.arbiter = arbiter
        self.pid = os.getpid()
        self.settings: PreforkSettings = settings_mod.load(arbiter.cfg)
        self.log = PluginLog(self.settings.logger or arbiter.log)
        self.reuseport = self.settings.reuseport
        self.table: SlotTable | None = None
        self.assignment: dict[int, Slot] = {}
        self.leaving: set[int] = set()
        self.spawning: Slot | bool | None = False
        #: seconds the worker being forked waits before booting (read in the child)
        self.spawn_delay = 0.0
        self.crashes = CrashCounter(self.settings.recover_threshold,
                                    self.settings.recover_window)
        self.replacements: list[_Replacement] = []
        self.first_update: dict[int, float] = {}
        #: replacements that wait (back-off) do not count as booted before this time
        self.boot_after: dict[int, float] = {}
        self.booted: set[int] = set()
        self.halt_pending = False
        self.ready = False
        self.draining: set[Slot] = set()
        #: slots whose worker exited, and replacements that must boot before traffic
        self.vacated: set[Slot] = set()
        self.awaiting_boot: set[int] = set()
        self.steered: tuple[int, ...] | None = None
        #: workerless slots with connections queued, and until when they may wait
        self.stranded: dict[Slot, float] = {}
        #: workers leaving on their own (max_requests, a TERM or QUIT the master did
        #: not send) -> the pid of the replacement forked for their slot, if any yet
        self.handovers: dict[int, int | None] = {}

    # -- configuration -------------------------------------------------------------

    def prepare_start(self) -> None:
        """Before Gunicorn's ``start()``: refuse impossible set-ups, own the sockets."""
        cfg = self.arbiter.cfg
        if not self.reuseport:
            self.log.info("prefork_reuseport is off: serving Gunicorn's shared socket")
            return
        check_reuseport_possible(cfg.address)
        self._take_over_reuse_port()

    def _take_over_reuse_port(self) -> None:
        """Gunicorn 24+ binds per worker when ``reuse_port`` is set: we own the sockets."""
        cfg = self.arbiter.cfg
        if cfg.reuse_port:
            self.log.info("Gunicorn's reuse_port is ignored: the master owns the "
                          "SO_REUSEPORT sockets")
            cfg.set("reuse_port", False)

    def reload_settings(self) -> None:
        """After a HUP built a new Config: read the settings again, keep the mode."""
        try:
            new = settings_mod.load(self.arbiter.cfg)
        except PreforkError as error:
            self.log.error("%s; keeping the previous prefork settings", error)
            new = self.settings
        if new.reuseport != self.reuseport:
            self.log.warning("prefork_reuseport changed to %s: this takes effect on a "
                             "restart (USR2 or stop/start); keeping %s",
                             new.reuseport, self.reuseport)
        self.settings = new
        self.log = PluginLog(new.logger or self.arbiter.log)
        self.crashes.configure(new.recover_threshold, new.recover_window)
        if self.reuseport:
            self._take_over_reuse_port()

    # -- listeners -----------------------------------------------------------------

    def create_listeners(self, cfg: Any, fds: Sequence[int] | None) -> list[Any]:
        """Replaces ``gunicorn.sock.create_sockets`` in the master."""
        count = max(1, self.arbiter.num_workers or 1)
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
            self.arbiter.systemd = False
            self.table.ensure(count)
        else:
            check_reuseport_possible(cfg.address)
            self.table = SlotTable.create(cfg, self.log, cfg.address, count, held)
        for bind, address in zip(cfg.address, self.table.addresses):
            if not fds and bind[1] == 0:
                self.log.info("port 0 of %s resolved to %s", bind[0], address[1])
        self.log.info("%d SO_REUSEPORT listener(s) per bind, one per worker, on %s",
                      len(self.table.slots), self.table.describe())
        self.assignment.clear()
        self.draining.clear()
        self.vacated.clear()
        self.stranded.clear()
        self.steered = None  # a new group: no program attached yet
        return self.table.listeners()

    # -- workers ---------------------------------------------------------------------

    def _staying(self) -> dict[int, Slot]:
        workers = self.arbiter.WORKERS
        for pid in [pid for pid in list(self.assignment) if pid not in workers]:
            self.assignment.pop(pid, None)
        self.leaving &= set(workers)
        for pid in [pid for pid in self.handovers if pid not in workers]:
            del self.handovers[pid]
        return {pid: slot for pid, slot in self.assignment.items()
                if pid not in self.leaving and pid not in self.handovers}

    def _sync_listeners(self) -> None:
        """Gunicorn's ``LISTENERS`` follow the table: USR2 passes them on, stop closes them."""
        if self.table is not None:
            self.arbiter.LISTENERS = self.table.listeners()

    def choose_slot(self) -> Slot:
        assert self.table is not None
        if len(self.table.slots) < self.arbiter.num_workers:
            self.table.ensure(self.arbiter.num_workers)
            self._sync_listeners()
        load = {id(slot): 0 for slot in self.table.slots}
        for slot in self._staying().values():
            if id(slot) in load:
                load[id(slot)] += 1
        open_slots = [slot for slot in self.table.slots if slot not in self.draining]
        # among the least loaded, a slot with connections waiting and no worker first
        return min(open_slots or self.table.slots,
                   key=lambda slot: (load[id(slot)], slot not in self.stranded))

    @staticmethod
    def _queued(slot: Slot) -> int:
        return sum(queued(listener) for listener in slot.sockets)

    def spawn(self, spawn_worker: Callable[[], Any]) -> Any:
        """Run Gunicorn's ``spawn_worker`` with the chosen slot as the worker's sockets."""
        slot: Slot | None = None
        arbiter = self.arbiter
        if self.reuseport and self.table is not None:
            slot = self.choose_slot()
        shared = arbiter.LISTENERS
        if slot is not None:
            arbiter.LISTENERS = slot.sockets
        replacement = self._take_replacement(slot)
        if replacement is not None:
            self.spawn_delay = max(0.0, replacement.not_before - time.monotonic())
        self.spawning = slot if slot is not None else True
        try:
            pid = spawn_worker()
        finally:
            arbiter.LISTENERS = shared
            self.spawning = False
            self.spawn_delay = 0.0
        if not isinstance(pid, int):
            return pid
        worker = arbiter.WORKERS.get(pid)
        self._remember_first_update(pid, worker)
        if replacement is not None and replacement.not_before > time.monotonic():
            self.boot_after[pid] = replacement.not_before
        if slot is not None:
            for old, successor in self.handovers.items():
                if successor is None and self.assignment.get(old) is slot:
                    self.handovers[old] = pid
                    self.log.info("worker %s takes over slot %d from worker %s, which "
                                  "accepts until it serves", pid, slot.number, old)
                    break
            self.assignment[pid] = slot
            self.log.debug("worker %s serves slot %d", pid, slot.number)
            if slot in self.vacated:
                self.vacated.discard(slot)
                self.awaiting_boot.add(pid)
        if replacement is not None:
            self._recovered(replacement, worker)
        return pid

    def _take_replacement(self, slot: Slot | None) -> _Replacement | None:
        slots = self.table.slots if self.table is not None else []
        self.replacements = [r for r in self.replacements
                             if r.slot is None or any(r.slot is s for s in slots)]
        for replacement in self.replacements:
            if slot is None or replacement.slot is slot:
                self.replacements.remove(replacement)
                return replacement
        return None

    def _recovered(self, replacement: _Replacement, worker: Any) -> None:
        old = replacement.old_worker
        self.log.info("worker %s replaces crashed worker %s%s", getattr(worker, "pid", "?"),
                      old.pid, self._slot_text(replacement.slot))
        self._metric("gunicorn.prefork.recoveries")
        self._call_hook("prefork_on_recover", self.settings.on_recover,
                        self.arbiter, old, worker)

    def after_fork_in_child(self) -> None:
        """Right after the fork of a worker, before Gunicorn's ``post_fork`` hook."""
        if self.spawning is False or os.getpid() == self.pid:
            return
        mark_child()
        if isinstance(self.spawning, Slot) and self.table is not None:
            self.table.close_except(self.spawning)

    def note_kill(self, pid: int, sig: int) -> None:
        if sig in LEAVE_SIGNALS:
            self.leaving.add(pid)

    # -- leaving on its own: overlap with the replacement ---------------------------

    def start_handovers(self) -> None:
        """Fork a replacement for every worker that announced it leaves on its own.

        A worker leaving on its own (``max_requests``; a TERM or QUIT the master did
        not send) announces it (see :mod:`gunicorn_prefork.handoff`). Its slot gets a
        new worker at once, as on HUP, while the old one keeps accepting; new
        connections go to the other serving slots until the new worker serves. The
        leaving worker is made the oldest, so Gunicorn's own surplus check picks it,
        and its SIGTERM is held back (:meth:`defers_kill`) until the new worker serves.
        Runs from the main loop only (it forks).
        """
        workers = self.arbiter.WORKERS
        for pid in [pid for pid in self.handovers if pid not in workers]:
            del self.handovers[pid]  # reaped since
        for pid, worker in list(workers.items()):
            if pid in self.handovers or pid in self.leaving or pid not in self.assignment:
                continue
            if not handoff.announced(worker.tmp):
                continue
            self.handovers[pid] = None
            slot = self.assignment[pid]
            worker.age = min(w.age for w in workers.values()) - 1
            self.vacated.add(slot)
            self.log.debug("worker %s leaves on its own: slot %d gets no new "
                           "connections until its replacement serves", pid, slot.number)
        if not self.handovers:
            return
        # Gunicorn counts the leaving workers among num_workers; replace them now
        while len(workers) - len(self.handovers) < self.arbiter.num_workers:
            if not isinstance(self.arbiter.spawn_worker(), int):
                break

    def defers_kill(self, pid: int, sig: int) -> bool:
        """Hold back the SIGTERM for a worker handing over until its successor serves."""
        if sig != signal.SIGTERM or pid not in self.handovers:
            return False
        successor = self.handovers[pid]
        worker = self.arbiter.WORKERS.get(successor) if successor is not None else None
        if successor is None or worker is None:  # no successor (TTOU) or it died
            return False
        return not self._has_booted(successor, worker)

    def drain_surplus(self) -> None:
        """Before Gunicorn stops surplus workers (TTOU, fewer workers after HUP).

        Gunicorn stops the oldest workers beyond ``num_workers``. Slots left with no
        staying worker by that are steered away from while their workers still
        accept; after :data:`DRAIN_SECONDS` Gunicorn's SIGTERM goes out.
        """
        table, arbiter = self.table, self.arbiter
        if table is None:
            return
        counted = {pid: worker for pid, worker in arbiter.WORKERS.items()
                   if pid not in self.handovers}
        surplus = len(counted) - arbiter.num_workers
        to_retire = len(table.slots) - arbiter.num_workers - len(self.draining)
        if surplus <= 0 or to_retire <= 0:
            return
        by_age = sorted(counted.items(), key=lambda item: item[1].age)
        victims = {pid for pid, _ in by_age[:surplus]}
        staying = self._staying()
        kept = {id(slot) for pid, slot in staying.items() if pid not in victims}
        victim_slots = {id(staying[pid]) for pid in victims if pid in staying}
        candidates = [slot for slot in table.slots
                      if id(slot) not in kept and slot not in self.draining]
        # a victim's slot first: its worker accepts while the slot drains
        candidates.sort(key=lambda slot: id(slot) not in victim_slots)
        chosen = candidates[:to_retire]
        if not chosen:
            return
        self.draining.update(chosen)
        self.steer()
        self.log.info("draining slot(s) %s for %.1fs before their workers stop",
                      ", ".join(str(slot.number) for slot in chosen), DRAIN_SECONDS)
        time.sleep(DRAIN_SECONDS)

    def settle_drained(self) -> None:
        """Close drained slots no worker holds any more; keep them if workers were
        added back meanwhile (TTOU then TTIN). Runs before and after Gunicorn
        manages its workers, so a new worker never doubles up on a busy slot.

        A slot beyond ``num_workers`` that has no worker at all (its worker had just
        exited when TTOU came, so Gunicorn stops nobody) is closed too: nobody would
        ever accept on it again."""
        table = self.table
        if table is None:
            return
        held = {id(slot) for pid, slot in self.assignment.items()
                if pid in self.arbiter.WORKERS}
        now = time.monotonic()
        surplus = len(table.slots) - self.arbiter.num_workers - len(self.draining)
        # workerless slots without a queue first: closing them loses nothing
        for slot in sorted(reversed(table.slots), key=self._queued):
            if surplus <= 0:
                break
            if id(slot) not in held and slot not in self.draining:
                self.draining.add(slot)
                surplus -= 1
        for slot in [slot for slot in table.slots if slot in self.draining]:
            if id(slot) in held:
                continue
            self.draining.discard(slot)
            if len(table.slots) > self.arbiter.num_workers:
                lost = self._queued(slot)
                if lost and now < self.stranded.setdefault(
                        slot, now + self.arbiter.cfg.graceful_timeout):
                    # Connections wait in it and nobody accepts: the next new worker
                    # takes this slot (choose_slot) and another one retires instead.
                    continue
                self.stranded.pop(slot, None)
                table.retire(slot)
                self._sync_listeners()
                self.log.info("retired slot %d; %d listener(s) per bind remain",
                              slot.number, len(table.slots))
                if lost:
                    self.log.warning("slot %d closed with %d connection(s) queued",
                                     slot.number, lost)
            else:
                self.log.info("slot %d is kept for a new worker", slot.number)
        self.steer()

    # -- steering -------------------------------------------------------------------

    def _serving(self) -> set[int]:
        """Slots (by id) with a staying worker that serves, or soon will."""
        workers = self.arbiter.WORKERS
        serving = set()
        for pid, slot in self._staying().items():
            if pid not in workers:
                continue
            if pid in self.awaiting_boot:
                if not self._has_booted(pid, workers[pid]):
                    continue
                self.awaiting_boot.discard(pid)
            serving.add(id(slot))
            self.stranded.pop(slot, None)
        return serving

    def steer(self) -> None:
        """New connections only to serving slots; plain hashing when all (or none) serve."""
        table = self.table
        if table is None or not table.slots:
            return
        serving = self._serving()
        allowed = tuple(index for index, slot in enumerate(table.slots)
                        if id(slot) in serving and slot not in self.draining)
        if not allowed:
            # nobody serves right now (every worker recycling at once): queue on the
            # slots that will get a worker, not on those about to close
            allowed = tuple(index for index, slot in enumerate(table.slots)
                            if slot not in self.draining and slot not in self.stranded)
            allowed = allowed[:self.arbiter.num_workers]
        if len(allowed) in (0, len(table.slots)):
            allowed = ()
        if allowed == self.steered:
            return
        try:
            for listener in table.slots[0].sockets:
                if listener.sock is None:
                    return
                if allowed:
                    steering.attach(listener.sock, allowed)
                else:
                    steering.detach(listener.sock)
        except OSError as exc:
            self.log.warning("cannot steer connections (%s); the kernel's hash applies", exc)
            return
        self.steered = allowed
        if allowed:
            self.log.debug("new connections go to slot index(es) %s of %d",
                           list(allowed), len(table.slots))
        else:
            self.log.debug("new connections spread over all %d slots", len(table.slots))

    # -- recovery ------------------------------------------------------------------

    def _remember_first_update(self, pid: int, worker: Any) -> None:
        try:
            self.first_update[pid] = worker.tmp.last_update()
        except (AttributeError, OSError, ValueError):
            pass

    def _has_booted(self, pid: int, worker: Any) -> bool:
        """A worker has booted once it notified the master (its first ``notify()``
        comes from the serving loop, after its servers started)."""
        if pid in self.booted:
            return True
        try:
            update = worker.tmp.last_update()
        except (AttributeError, OSError, ValueError):
            return False
        if time.monotonic() < self.boot_after.get(pid, 0.0):
            # still waiting out its back-off (it notifies meanwhile): re-baseline
            self.first_update[pid] = update
            return False
        if update != self.first_update.get(pid):
            self.booted.add(pid)
            self.boot_after.pop(pid, None)
            return True
        return False

    @staticmethod
    def _slot_text(slot: Slot | None) -> str:
        return f" on slot {slot.number}" if slot is not None else ""

    def on_reaped(self, pid: int, status: int) -> None:
        """Gunicorn just reaped ``pid``; may run inside a signal handler (20.1 to 23).

        So it only records: it may interrupt the main loop in the middle of the
        plugin's own bookkeeping. Steering away from the slot follows at once from
        the main loop, which Gunicorn wakes after every reap.
        """
        worker = self.arbiter.WORKERS.get(pid)
        if worker is None:
            return
        booted = self._has_booted(pid, worker)
        kind = classify(status, asked=pid in self.leaving,
                        aborted=bool(getattr(worker, "aborted", False)), booted=booted)
        cause = describe_status(status) + ("" if booted else " before it booted")
        slot = self.assignment.get(pid)
        if slot is not None and not any(
                other != pid and held is slot and other in self.arbiter.WORKERS
                for other, held in self.assignment.items()):
            self.vacated.add(slot)  # its replacement must boot before it gets traffic
        self.awaiting_boot.discard(pid)
        self.first_update.pop(pid, None)
        self.boot_after.pop(pid, None)
        self.booted.discard(pid)
        counted = kind is ExitKind.CRASH or (
            kind is ExitKind.TIMEOUT and self.settings.count_timeouts)
        if not counted:
            self.log.debug("worker %s%s %s (%s): not a crash", pid, self._slot_text(slot),
                           cause, kind.value)
            return
        if kind is ExitKind.TIMEOUT:
            cause = f"timed out ({cause})"
        now = time.monotonic()
        self.crashes.record(Crash(now, pid, cause))
        self._metric("gunicorn.prefork.crashes")
        recent = len(self.crashes.recent(now))
        self.log.warning("worker %s%s crashed: %s; %d crash(es) %s, "
                         "prefork_recover_threshold = %d", pid, self._slot_text(slot), cause,
                         recent, self._window_text(), self.crashes.threshold)
        self.replacements.append(
            _Replacement(slot, worker, now + self.settings.recover_interval))
        if self.crashes.over(now):
            self.halt_pending = True

    def _window_text(self) -> str:
        window = self.settings.recover_window
        return f"within {window:g}s" if window > 0 else "since start"

    def halt_if_over_threshold(self) -> None:
        """From the main loop, before workers are managed: the one place that halts."""
        if not self.halt_pending:
            return
        self.halt_pending = False
        error = OverRecoveryError(self.crashes.halt_message(time.monotonic()))
        self.log.error("%s", error)
        raise HaltServer("too many worker crashes (prefork_recover_threshold)",
                         error.exit_status)

    def check_ready(self) -> None:
        """Fire ``prefork_on_ready`` once, when all initial workers are serving."""
        if self.ready:
            return
        workers = dict(self.arbiter.WORKERS)  # a copy: 20.1-23 reap in a signal handler
        if len(workers) < self.arbiter.num_workers:
            return
        if not all(self._has_booted(pid, worker) for pid, worker in workers.items()):
            return
        self.ready = True
        self.log.info("all %d workers are serving", len(workers))
        self._call_hook("prefork_on_ready", self.settings.on_ready, self.arbiter,
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
        increment = getattr(self.arbiter.log, "increment", None)
        if callable(increment):
            increment(name, 1)
