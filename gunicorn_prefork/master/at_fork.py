"""The master's fork hygiene in one place: what is paused around a fork, and what a
child (a worker, or Gunicorn's USR2 re-exec) closes or forgets right after it.

Every object of the master that holds a descriptor, a connection or a thread a
child must not keep registers here (:func:`register`) when it is made; one
``os.register_at_fork`` hook (installed once, by :func:`install`) runs them all:

* before the fork: :meth:`ForkAware.pause_for_fork` (a thread alive at ``fork()``
  may hold a lock the child inherits held; Python 3.12+ warns about it);
* in the child, first the worker's plan (:func:`gunicorn_prefork.fork.child_plan.
  after_fork_in_child`: the other slots' sockets closed, parent-death signal,
  early stop signals kept), then :meth:`ForkAware.close_in_child` of each object.

The parent resumes what it paused itself, from its main loop
(:func:`~gunicorn_prefork.master.master_thread.resume_after_fork`), not from an
``after_in_parent`` hook (Python 3.12+ counts the threads for its warning after
those hooks ran).

A new resource of the master that a worker must not inherit: give its owner a
``close_in_child`` method and call :func:`register` in its constructor.

Invariants: objects are held weakly (a dropped object is not kept alive for its
hook); hooks never raise into ``fork()`` (an error is swallowed: a child must
start); the hook is registered once per process.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

from ..fork import child_plan


class ForkAware(Protocol):
    def close_in_child(self) -> None:
        """In a child right after the fork: close or forget what it must not hold."""


_members: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_installed = False


def register(member: ForkAware) -> None:
    """``member`` takes part in every fork of this process from now on."""
    _members.add(member)
    install()


def _before() -> None:
    for member in list(_members):
        pause = getattr(member, "pause_for_fork", None)
        if pause is not None:
            try:
                pause()
            except Exception:  # the fork must happen
                pass


def _in_child() -> None:
    child_plan.after_fork_in_child()
    for member in list(_members):
        try:
            member.close_in_child()
        except Exception:  # the child must start
            pass


def install() -> None:
    """Register the one fork hook of this process (later calls do nothing)."""
    global _installed
    if _installed:
        return
    _installed = True
    os.register_at_fork(before=_before, after_in_child=_in_child)
