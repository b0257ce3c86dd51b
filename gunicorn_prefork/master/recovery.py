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

Back-off (fasthttp's ``RecoverInterval``): each counted crash leaves a
:class:`Replacement` due ``prefork_recover_interval`` seconds later. The master forks
the crashed slot's next worker at once (its loop never waits) and hands it the time
left as its boot delay; the worker waits that long before it boots.

Invariants: the master halts only from its main loop (:meth:`Recovery.take_halt`),
never from a signal handler or a hook, so it halts once; a replacement is taken at
most once.
"""

from __future__ import annotations

import enum
import os
import signal
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import EXIT_OVER_RECOVERY


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

    def configure(self, threshold: int, window: float) -> None:
        self.threshold = threshold
        self.window = window

    def record(self, crash: Crash) -> None:
        if self.window > 0:  # older crashes can never count again
            while self.crashes and self.crashes[0].at <= crash.at - self.window:
                self.crashes.popleft()
        self.crashes.append(crash)

    def recent(self, now: float) -> list[Crash]:
        if self.window > 0:
            # a copy first (one C call): on 20.1-23 a crash is recorded from Gunicorn's
            # SIGCHLD handler, which may run between two steps of this loop
            return [crash for crash in list(self.crashes) if crash.at > now - self.window]
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


@dataclass
class Replacement:
    """A crashed worker waiting for its successor, due no earlier than ``not_before``."""

    slot: Any
    old_worker: Any
    not_before: float


class Recovery:
    """Crash counting, the halt decision and the crashed slots' back-off."""

    def __init__(self, threshold: int, window: float) -> None:
        self.crashes = CrashCounter(threshold, window)
        self.replacements: list[Replacement] = []
        self.halt_pending = False

    def configure(self, threshold: int, window: float) -> None:
        self.crashes.configure(threshold, window)

    def record(self, crash: Crash, slot: Any, worker: Any, interval: float) -> int:
        """Count a crash; returns the crashes in the window now."""
        self.crashes.record(crash)
        self.replacements.append(Replacement(slot, worker, crash.at + interval))
        if self.crashes.over(crash.at):
            self.halt_pending = True
        return len(self.crashes.recent(crash.at))

    def take_replacement(self, slot: Any, live_slots: Sequence[Any]) -> Replacement | None:
        """The pending replacement for ``slot`` (any, with no slots), if one is due."""
        # removed in place, from a copy: one appended meanwhile (SIGCHLD) stays
        for stale in [r for r in list(self.replacements)
                      if r.slot is not None and not any(r.slot is s for s in live_slots)]:
            self.replacements.remove(stale)
        for replacement in list(self.replacements):
            if slot is None or replacement.slot is slot:
                self.replacements.remove(replacement)
                return replacement
        return None

    def take_halt(self) -> bool:
        """From the main loop: should the master halt now? (Answers yes once.)"""
        pending, self.halt_pending = self.halt_pending, False
        return pending
