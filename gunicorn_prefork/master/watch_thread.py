"""When the master's stall watch looks: a thread of its own, asleep while nothing waits.

Why a thread
------------
The watch first ran from an interval timer (``SIGALRM``) in the master's main
thread. Gunicorn 24+ waits for its next loop turn with
``SimpleQueue.get(timeout=1.0)``, and on some interpreter builds (pyenv's 3.10-3.12;
not 3.9, 3.13 or Debian's 3.11) a timed lock wait that signal handlers keep
interrupting loses its timeout: Gunicorn's loop stopped turning, so a stuck worker
was never killed at ``timeout`` and a USR2 master was not always promoted. And the
timer woke an idle master 100-500 times a second. The alternatives weighed:

* keep the timer, but wake Gunicorn's loop (``Arbiter.wakeup``) from it once a
  second and run it only while something is queued: relies on how each build
  retries an interrupted wait, still interrupts whatever the master does (Gunicorn's
  own handlers and hooks included) hundreds of times a second under load;
* a process of its own holding copies of the slot sockets: no signal and no thread
  in the master, but one more process to fork, supervise, reap and keep told of
  every slot change, for the same work;
* a thread (this module): adds no signal to the master, so none of Gunicorn's waits
  is interrupted by us, on any build; it sleeps in ``poll()`` on the master's copies
  of the slot sockets and the rescue channels, which turn readable when a connection
  is queued or a moved one is unread: **no wake-up while nothing waits**.

Invariants
----------
The thread's discipline (signals blocked, never alive across a fork, restarted by
:func:`resume_after_fork`) is :class:`~.master_thread.MasterThread`'s. Besides:

* **It never waits for the main thread.** A tick runs under ``lock``, which the main
  loop holds while it changes what a tick reads; the thread only *tries* the lock
  and looks again one interval later when the main loop holds it, so it cannot
  deadlock with the main loop, a signal handler or a fork.
* At most one tick per ``interval``; ``tick`` never raises into the thread.
"""

from __future__ import annotations

import select
import threading
import time
from collections.abc import Callable, Sequence
from typing import Optional

from .master_thread import MasterThread, resume_after_fork

__all__ = ["Poll", "Tick", "WatchThread", "poll_readable", "resume_after_fork"]

#: ``tick(quiet_until)``: ``quiet_until`` is a moment up to which nothing was queued
#: (the thread slept until then in a poll that any queued connection would have
#: ended), or None; returns whether to look again one interval later whatever the
#: sockets say (a stall is open, a connection is pending).
Tick = Callable[[Optional[float]], bool]  # (a runtime alias: no ``X | None`` on 3.9)

#: ``poll(fds, timeout)``: sleeps until one of ``fds`` is readable (or in error) or
#: ``timeout`` seconds have passed (None: no limit); returns the descriptors that
#: ended it. The thread's one way to wait (:func:`poll_readable`; tests pass their own).
Poll = Callable[[Sequence[int], Optional[float]], Sequence[int]]

_READABLE = select.POLLIN | select.POLLPRI


def poll_readable(fds: Sequence[int], timeout: float | None) -> list[int]:
    """:data:`Poll` with ``poll()``; an interrupted or failed poll ends with none."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, _READABLE)
    try:
        events = poller.poll(None if timeout is None else timeout * 1000)
    except OSError:
        return []
    return [fd for fd, _ in events]


class WatchThread(MasterThread):
    """Calls ``tick`` when something is queued, then every ``interval`` while it asks."""

    def __init__(self, interval: float, tick: Tick, fds: Callable[[], Sequence[int]],
                 lock: threading.RLock, name: str = "gunicorn-prefork-stall-watch",
                 poll: Poll = poll_readable) -> None:
        super().__init__(name)
        self.interval = interval
        self._tick = tick
        self._poll = poll
        self._fds = fds
        self._lock = lock
        #: wake-ups of the thread (polls that ended) since the start, for tests
        self.wakeups = 0

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        keep_looking = False
        while not self.stopping:
            quiet_until: float | None = None
            if not keep_looking:
                fds = self._watched()
                if fds is None:  # the main loop holds the lock: look again soon
                    keep_looking = True
                    continue
                self._wait(fds, None)
                quiet_until = time.monotonic()
                if self.stopping:
                    return
            keep_looking = self._tick_once(quiet_until)
            self._wait((), self.interval)  # at most one tick per interval

    def _watched(self) -> list[int] | None:
        if not self._lock.acquire(blocking=False):
            self._wait((), self.interval)
            return None
        try:
            return [fd for fd in self._fds() if fd >= 0]
        except Exception:
            return []
        finally:
            self._lock.release()

    def _tick_once(self, quiet_until: float | None) -> bool:
        if not self._lock.acquire(blocking=False):
            return True
        try:
            return self._tick(quiet_until)
        except Exception:  # never let the watch end: the next tick tries again
            return True
        finally:
            self._lock.release()

    def _wait(self, fds: Sequence[int], timeout: float | None) -> None:
        """Until one of ``fds`` is readable (or in error), a wake-up, or ``timeout``."""
        wake = self.wakeup_fileno()
        ready = self._poll([wake, *fds], timeout)
        self.wakeups += 1
        if wake in ready:
            self.drain_wakeups()
