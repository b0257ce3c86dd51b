"""Which workers have booted, seen from the master through Gunicorn's heartbeat.

A worker has booted once it notified the master: its first ``notify()`` comes from
the serving loop, after its servers started. The master takes each worker's
heartbeat time when it forks it (the baseline); a later, different time means the
worker serves.

A crashed worker's replacement that waits out ``prefork_recover_interval`` notifies
meanwhile (so the master's timeout spares it) but stops doing so a little before it
boots; until its ``boot_after`` time the watch moves the baseline along instead of
taking those heartbeats for a boot.

Invariants: a pid is in ``booted`` only after a heartbeat other than its baseline
at or after its ``boot_after`` time; :meth:`BootWatch.update` is the one place that
changes it.
"""

from __future__ import annotations

import time
from typing import Any

from .._gunicorn import heartbeat


class BootWatch:
    """Heartbeat baselines and the booted set, per worker pid."""

    def __init__(self) -> None:
        self._baseline: dict[int, float | None] = {}
        self._boot_after: dict[int, float] = {}
        self._booted: set[int] = set()

    def note_spawned(self, pid: int, worker: Any, boot_after: float = 0.0) -> None:
        """A worker was just forked; it boots no earlier than ``boot_after``."""
        self._baseline[pid] = heartbeat(worker)
        if boot_after > time.monotonic():
            self._boot_after[pid] = boot_after

    def update(self, pid: int, worker: Any) -> bool:
        """Look at the worker's heartbeat now; returns whether it has booted."""
        if pid in self._booted:
            return True
        update = heartbeat(worker)
        if update is None:
            return False
        if time.monotonic() < self._boot_after.get(pid, 0.0):
            self._baseline[pid] = update  # still waiting out its back-off
            return False
        if update != self._baseline.get(pid):
            self._booted.add(pid)
            self._boot_after.pop(pid, None)
            return True
        return False

    def forget(self, pid: int) -> None:
        self._baseline.pop(pid, None)
        self._boot_after.pop(pid, None)
        self._booted.discard(pid)
