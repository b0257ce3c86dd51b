"""How much CPU a worker has had, and whether it wants one now: what tells a stalled
event loop from a worker that only waits for a CPU on a saturated machine.

The stall watch (:mod:`.stall_watch`) sees a slot whose queue is not empty while its
worker's progress counter does not move. On a machine with more runnable processes
than cores (the load client on the same cores, more workers than cores) a healthy
worker is often off its CPU for longer than ``prefork_stall_threshold``: it is
*runnable*, waiting for the scheduler, and it takes its queue on as soon as it runs.
Moving that queue elsewhere helps nobody (the other workers wait for a CPU too) and
leaves keep-alive connections on whichever worker they were moved to.

Linux says both things per task:

* ``/proc/<pid>/schedstat``: its first field is the nanoseconds the task has run
  (``se.sum_exec_runtime``; kept by the scheduler, brought up to date at least every
  scheduler tick);
* ``/proc/<pid>/stat``: the state after the command name; ``R`` is running *or*
  waiting on a run queue; a stopped (``T``), sleeping (``S``: blocked in a call)
  or disk-waiting (``D``) worker is not taking its queue on whatever the machine.

The files are opened once per worker and re-read with ``pread`` (the kernel makes the
text anew on each read at offset 0): a few microseconds, done only for a slot the
watch suspects. A worker that is gone, or a kernel without the files, gives ``None``,
and the watch goes by the wall clock as before.

Invariants: only the watch thread reads (under the steering lock); the main loop
calls :meth:`WorkerCpu.keep_only` under the same lock; descriptors of workers no
longer listed are closed, and a forked child (a worker) closes its copies at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from . import at_fork


@dataclass(frozen=True)
class CpuSample:
    """One look at a slot's workers."""

    #: nanoseconds they have run, summed
    ran_ns: int
    #: some worker of the slot is running or waiting for a CPU (state ``R``)
    runnable: bool


def task_state(stat: bytes) -> bytes:
    """The state letter of a ``/proc/<pid>/stat`` text (``b"R"``, ``b"T"``, ...);
    ValueError when it has none."""
    # "pid (comm) S ...": the command may hold spaces and parentheses
    return stat[stat.rindex(b")") + 2:][:1]


class WorkerCpu:
    """Reads the scheduler's view of workers, by pid."""

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._fds: dict[int, tuple[int, int]] = {}
        at_fork.register(self)
        #: this kernel keeps the files (it shows them for the master itself)
        self.available = (os.path.exists(f"{proc}/self/schedstat")
                          and os.path.exists(f"{proc}/self/stat"))

    def sample(self, pids: Iterable[int]) -> CpuSample | None:
        """The workers' CPU time and state now; ``None`` if any of them cannot be
        read (gone, no ``/proc``, no schedstat)."""
        ran, runnable, any_pid = 0, False, False
        for pid in pids:
            one = self._read(pid)
            if one is None:
                return None
            ran += one[0]
            runnable = runnable or one[1]
            any_pid = True
        return CpuSample(ran, runnable) if any_pid else None

    def close_in_child(self) -> None:
        """A worker has no use for the master's view of its siblings."""
        self.keep_only(())

    def keep_only(self, pids: Iterable[int]) -> None:
        """Forget (close) the files of workers not in ``pids``."""
        keep = set(pids)
        for pid in [pid for pid in self._fds if pid not in keep]:
            self._close(pid)

    def _read(self, pid: int) -> tuple[int, bool] | None:
        fds = self._fds.get(pid)
        try:
            if fds is None:
                fds = self._fds[pid] = self._open(pid)
            ran = int(os.pread(fds[0], 128, 0).split(None, 1)[0])
            state = task_state(os.pread(fds[1], 512, 0))
        except (OSError, ValueError, IndexError):
            self._close(pid)
            return None
        return ran, state == b"R"

    def _open(self, pid: int) -> tuple[int, int]:
        schedstat = os.open(f"{self._proc}/{pid}/schedstat", os.O_RDONLY | os.O_CLOEXEC)
        try:
            stat = os.open(f"{self._proc}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(schedstat)
            raise
        return schedstat, stat

    def _close(self, pid: int) -> None:
        for fd in self._fds.pop(pid, ()):
            try:
                os.close(fd)
            except OSError:
                pass
