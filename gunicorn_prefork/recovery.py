"""Crash accounting: fasthttp's ``RecoverThreshold`` and ``ErrOverRecovery``.

Theory of operation
-------------------
Gunicorn respawns crashed workers forever (only exit statuses 3 and 4 stop it) and
its ``child_exit`` hook is not told how a worker ended. The master side of the plugin
sees every reaped status (see ``arbiter_hook``) and classifies each worker exit:

* **asked**: the master had sent the worker TERM/QUIT/INT (stop, HUP, TTOU, ...);
* **timeout**: the master killed it for not notifying in time (``worker.aborted``);
* **clean**: it exited with status 0 on its own after booting (``max_requests``);
* **crash**: anything else: a non-zero status, a signal the master did not send, or
  an exit before the worker ever booted.

Crashes (and timeouts with ``prefork_count_timeouts``) are counted; more than
``threshold`` of them within ``window`` seconds (0 = the master's whole life) means
the master halts with :data:`EXIT_OVER_RECOVERY`.
"""

from __future__ import annotations

import enum
import os
import signal
from collections import deque
from dataclasses import dataclass

from .errors import EXIT_OVER_RECOVERY


class ExitKind(enum.Enum):
    ASKED = "asked to leave"
    CLEAN = "clean exit"
    TIMEOUT = "timeout"
    CRASH = "crash"


def describe_status(status: int) -> str:
    """``exited with code 1`` / ``killed by SIGKILL``, as an operator would say it."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"killed by {name}"
    if os.WIFEXITED(status):
        return f"exited with code {os.WEXITSTATUS(status)}"
    return f"ended with status {status}"


def classify(status: int, *, asked: bool, aborted: bool, booted: bool) -> ExitKind:
    """How a reaped worker ended (see the module docstring)."""
    if aborted:
        return ExitKind.TIMEOUT
    if asked:
        return ExitKind.ASKED
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and booted:
        return ExitKind.CLEAN
    return ExitKind.CRASH


@dataclass(frozen=True)
class Crash:
    at: float
    pid: int
    cause: str


class CrashCounter:
    """Crashes within a sliding window; ``window == 0`` keeps them all."""

    def __init__(self, threshold: int, window: float) -> None:
        self.threshold = threshold
        self.window = window
        self.crashes: deque[Crash] = deque()
        self.total = 0

    def configure(self, threshold: int, window: float) -> None:
        self.threshold = threshold
        self.window = window

    def record(self, crash: Crash) -> None:
        self.crashes.append(crash)
        self.total += 1

    def recent(self, now: float) -> list[Crash]:
        if self.window > 0:
            while self.crashes and self.crashes[0].at <= now - self.window:
                self.crashes.popleft()
        return list(self.crashes)

    def over(self, now: float) -> bool:
        return self.threshold > 0 and len(self.recent(now)) > self.threshold

    def halt_message(self, now: float, last: int = 3) -> str:
        recent = self.recent(now)
        span = f"within {self.window:g}s" if self.window > 0 else "since the master started"
        causes = "; ".join(f"worker {c.pid} {c.cause}" for c in recent[-last:])
        return (f"halting: {len(recent)} worker crashes {span} exceed "
                f"prefork_recover_threshold = {self.threshold} (last: {causes}); "
                f"exit status {EXIT_OVER_RECOVERY}")
