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

Invariants (the costs of a thread, and how they are met)
-------------------------------------------------------
* **Never alive across a fork.** A thread alive at ``fork()`` may hold a lock the
  child inherits held, and Python 3.12+ warns about it. the fork hook (:mod:`.at_fork`) stops
  the thread before every fork of the master (workers, Gunicorn's USR2 re-exec), as
  Gunicorn 27 does with its control-socket thread; the master starts it again with
  :func:`resume_after_fork` once the fork returned (right after forking a worker, and
  at its next loop turn); a child closes the thread's wake-up pair.
* **No signal is delivered to it.** A process-directed signal goes to any thread
  that does not block it; one taken here would leave Gunicorn's main thread asleep
  in its wait. The thread is created with every signal blocked (it inherits the
  mask), so all of them reach the main thread as before.
* **It never waits for the main thread.** A tick runs under ``lock``, which the main
  loop holds while it changes what a tick reads; the thread only *tries* the lock
  and looks again one interval later when the main loop holds it, so it cannot
  deadlock with the main loop, a signal handler or a fork.
* At most one tick per ``interval``; ``tick`` never raises into the thread.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Optional

from . import at_fork

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


class WatchThread:
    """Calls ``tick`` when something is queued, then every ``interval`` while it asks."""

    def __init__(self, interval: float, tick: Tick, fds: Callable[[], Sequence[int]],
                 lock: threading.RLock, name: str = "gunicorn-prefork-stall-watch",
                 poll: Poll = poll_readable) -> None:
        self.interval = interval
        self._tick = tick
        self._poll = poll
        self._fds = fds
        self._lock = lock
        self._name = name
        self._owner = os.getpid()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        #: wake-ups of the thread (polls that ended) since the start, for tests
        self.wakeups = 0

    # -- the main thread's side ------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Start the thread with every signal blocked in it (they stay the main
        thread's); also again after a fork."""
        global _active
        if self._thread is not None or os.getpid() != self._owner:
            return
        self._stopping = False
        thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            thread.start()  # the new thread inherits the blocked mask
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self._thread = thread
        _active = self

    def stop(self) -> None:
        """Stop the thread and wait for it (a tick in progress finishes first)."""
        global _active
        self._pause()
        if _active is self:
            _active = None

    def wake(self) -> None:
        """Look now: what the thread watches changed (called by the main loop)."""
        try:
            self._wake_w.send(b"x")
        except OSError:  # full: a wake-up is pending anyway; closed: stopped
            pass

    def _pause(self) -> bool:
        thread = self._thread
        if thread is None or os.getpid() != self._owner:
            return False
        self._stopping = True
        self.wake()
        if thread is not threading.current_thread():
            thread.join()
            _until_gone(thread.native_id)
        self._thread = None
        return True

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        keep_looking = False
        while not self._stopping:
            quiet_until: float | None = None
            if not keep_looking:
                fds = self._watched()
                if fds is None:  # the main loop holds the lock: look again soon
                    keep_looking = True
                    continue
                self._wait(fds, None)
                quiet_until = time.monotonic()
                if self._stopping:
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
        wake = self._wake_r.fileno()
        ready = self._poll([wake, *fds], timeout)
        self.wakeups += 1
        if wake in ready:
            try:
                while self._wake_r.recv(4096):
                    pass
            except OSError:
                pass


def _until_gone(native_id: int | None, limit: float = 0.1) -> None:
    """Until the OS thread has exited, not only its Python side: before 3.13,
    ``join()`` returns a moment earlier, and Python 3.12 counts the process's threads
    in ``/proc`` for its fork warning."""
    if native_id is None:
        return
    deadline = time.monotonic() + limit
    while os.path.exists(f"/proc/self/task/{native_id}") and time.monotonic() < deadline:
        time.sleep(0.0002)


#: The thread running in this process, stopped and restarted around every fork.
_active: WatchThread | None = None
_paused_for_fork = False


class _ForkGuard:
    """This module's part in :mod:`.at_fork`: the running thread is paused before
    every fork; a child forgets it and closes its wake-up pair."""

    def pause_for_fork(self) -> None:
        global _paused_for_fork
        watch = _active
        _paused_for_fork = watch is not None and watch._pause()

    def close_in_child(self) -> None:
        """A child has no such thread (threads do not survive fork): forget it,
        close its wake-up pair (a worker must not hold the master's descriptors)."""
        global _active, _paused_for_fork
        watch, _active, _paused_for_fork = _active, None, False
        if watch is not None:
            watch._thread = None
            watch._wake_r.close()
            watch._wake_w.close()


def resume_after_fork() -> None:
    """In the parent, after a fork: start the thread the fork stopped. Called by the
    master right after it forked a worker, and from its next loop turn (any other
    fork: Gunicorn's USR2 re-exec). Not from an ``after_in_parent`` fork hook:
    Python 3.12+ count the threads for their fork warning after those hooks ran."""
    global _paused_for_fork
    watch = _active
    if _paused_for_fork and watch is not None and os.getpid() == watch._owner:
        _paused_for_fork = False
        watch.start()


_FORK_GUARD = _ForkGuard()  # held here: at_fork keeps its members weakly
at_fork.register(_FORK_GUARD)
