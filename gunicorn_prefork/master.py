"""What the plugin does in the master, one method per arbiter event.

:mod:`gunicorn_prefork.arbiter_hook` calls these from Gunicorn's ``Arbiter`` methods;
this module holds the state: the settings of the current configuration, the slot
table, which worker serves which slot, and which workers the master asked to leave.

Slot assignment: a new worker takes the slot with the fewest *staying* workers (live
and not asked to leave), lowest number first. A replacement thus lands on the slot
its predecessor left, and on HUP each slot gets one new worker while the old one
finishes. When there are more slots than ``num_workers`` (TTOU, fewer workers after
HUP), slots whose workers are all leaving are retired.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

from . import settings as settings_mod
from .child import mark_child
from .errors import EXIT_STARTUP_ERROR, PreforkError
from .plugin_log import PluginLog
from .settings import PreforkSettings
from .slots import Slot, SlotTable, check_reuseport_possible

#: Signals with which the master tells a worker to go (stop, reload, TTOU, timeout).
LEAVE_SIGNALS = frozenset({signal.SIGTERM, signal.SIGQUIT, signal.SIGINT,
                           signal.SIGKILL, signal.SIGABRT})


def fail_startup(log: Any, cfg: Any, error: PreforkError) -> None:
    """One clear line, Gunicorn's start-up exit status, no traceback."""
    log.error("Error: %s", error)
    if getattr(cfg, "errorlog", "-") != "-":
        print(f"Error: {error}", file=sys.stderr, flush=True)
    sys.exit(EXIT_STARTUP_ERROR)


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
        return self.table.listeners()

    # -- workers ---------------------------------------------------------------------

    def _staying(self) -> dict[int, Slot]:
        workers = self.arbiter.WORKERS
        for pid in [pid for pid in self.assignment if pid not in workers]:
            del self.assignment[pid]
        self.leaving &= set(workers)
        return {pid: slot for pid, slot in self.assignment.items() if pid not in self.leaving}

    def choose_slot(self) -> Slot:
        assert self.table is not None
        self.table.ensure(self.arbiter.num_workers)
        load = {id(slot): 0 for slot in self.table.slots}
        for slot in self._staying().values():
            if id(slot) in load:
                load[id(slot)] += 1
        return min(self.table.slots, key=lambda slot: load[id(slot)])

    def spawn(self, spawn_worker: Callable[[], Any]) -> Any:
        """Run Gunicorn's ``spawn_worker`` with the chosen slot as the worker's sockets."""
        if not self.reuseport or self.table is None:
            self.spawning = True
            try:
                return spawn_worker()
            finally:
                self.spawning = False
        slot = self.choose_slot()
        arbiter = self.arbiter
        shared = arbiter.LISTENERS
        arbiter.LISTENERS = slot.sockets
        self.spawning = slot
        try:
            pid = spawn_worker()
        finally:
            arbiter.LISTENERS = shared
            self.spawning = False
        if isinstance(pid, int):
            self.assignment[pid] = slot
            self.log.debug("worker %s serves slot %d", pid, slot.number)
        return pid

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

    def retire_surplus(self) -> None:
        """Close slots beyond ``num_workers`` once no staying worker serves them."""
        table = self.table
        if table is None or len(table.slots) <= self.arbiter.num_workers:
            return
        served = {id(slot) for slot in self._staying().values()}
        for slot in reversed(list(table.slots)):
            if len(table.slots) <= self.arbiter.num_workers:
                break
            if id(slot) not in served:
                table.retire(slot)
                self.log.info("retired slot %d; %d listener(s) per bind remain",
                              slot.number, len(table.slots))
