"""What a worker gets from the master at its fork, passed explicitly.

The master arms a :class:`ChildPlan` right before Gunicorn forks a worker and
disarms it right after. In the child, the at-fork handler takes the plan over
(:func:`received`), keeps the stop signals that arrive before the worker's own
handlers (:mod:`.early_signals`), closes the other slots' descriptors and marks the
process as a child, before Gunicorn's ``post_fork`` hook runs; the worker later reads its boot
delay and the plugin's logger from the plan, never from master-side state.

Invariant: a plan is armed only around one ``fork()``; in the master nothing is
received, in a worker exactly the plan of its own fork is.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import early_signals, parent_death
from .child import mark_child


@dataclass(frozen=True)
class ChildPlan:
    """One worker's start: whose child it is, what it closes, how long it waits."""

    master_pid: int
    #: listeners of the other slots: closed in the child right after the fork
    close: Sequence[Any] = ()
    #: seconds to wait before booting (``prefork_recover_interval`` back-off)
    boot_delay: float = 0.0
    #: the plugin's logger (``prefork_logger`` or Gunicorn's error log)
    log: Any = None
    #: the shared progress page and this worker's counter in it (None: not watched)
    progress: Any = None
    progress_index: int | None = None
    #: the worker's end of its slot's rescue channel (see :mod:`.rescue`)
    rescue: Any = None
    #: the worker's end of its slot's hand-back channel (:mod:`.rescue_channel`)
    handback: Any = None


_armed: ChildPlan | None = None
_received: ChildPlan | None = None


def arm(plan: ChildPlan) -> None:
    """Master: the next fork is a worker that gets ``plan``."""
    global _armed
    _armed = plan


def armed() -> ChildPlan | None:
    """Master: the plan armed for the fork about to happen (None between forks)."""
    return _armed


def disarm() -> None:
    global _armed
    _armed = None


def after_fork_in_child() -> None:
    """Registered with ``os.register_at_fork``: runs in every child of this process."""
    global _received
    plan = _armed
    if plan is None or os.getpid() == plan.master_pid:
        return
    disarm()
    _received = plan
    early_signals.hold()
    mark_child()
    parent_death.die_with(plan.master_pid)
    for listener in plan.close:
        listener.close()


def received() -> ChildPlan | None:
    """Worker: the plan of this process's fork (None outside a prefork worker)."""
    return _received
