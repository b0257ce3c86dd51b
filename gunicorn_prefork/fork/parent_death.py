"""Workers die with their master (fasthttp's ``OnMasterDeath``), at once.

Gunicorn's workers notice a dead master by polling their parent pid about once a
second. Right after the fork, a prefork worker also asks Linux for a parent-death
signal (``prctl(PR_SET_PDEATHSIG, SIGKILL)``) and then checks once that its parent is
still the master (it may have died between the fork and the ``prctl``). Linux clears
that request when a process changes its credentials (Gunicorn's ``--user``/``--group``
in the worker), so the worker asks again once it runs its serving loop. Gunicorn's
poll stays as the fall-back (other platforms, a refused ``prctl``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

PR_SET_PDEATHSIG = 1

_libc: ctypes.CDLL | None = None


def _prctl() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            return None
    return _libc


def die_with(master_pid: int) -> None:
    """In a worker: get SIGKILL when the master dies; exit now if it already has."""
    libc = _prctl()
    if libc is not None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != master_pid:
        os._exit(0)
