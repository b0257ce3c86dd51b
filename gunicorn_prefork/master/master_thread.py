"""A thread of the master's own, with the discipline a thread in Gunicorn's master
needs: started with every signal blocked, never alive across a fork, woken through a
socket pair.

Two threads use it: the stall watch (:mod:`.watch_thread`) and the status endpoint
(:mod:`.status_server`). Why a thread at all, and not a signal or a process, is told
in :mod:`.watch_thread`.

Invariants
----------
* **Never alive across a fork.** A thread alive at ``fork()`` may hold a lock the
  child inherits held, and Python 3.12+ warns about it. Each :class:`MasterThread`
  takes part in the fork hook (:mod:`.at_fork`), which stops every running one
  before every fork of the master (workers, Gunicorn's USR2 re-exec), as Gunicorn 27
  does with its control-socket thread; the master starts them again with :func:`resume_after_fork`
  once the fork returned (right after forking a worker, and at its next loop turn); a
  child forgets them and closes their wake-up pairs (and whatever
  :meth:`MasterThread.close_in_child` adds).
* **No signal is delivered to it.** A process-directed signal goes to any thread
  that does not block it; one taken here would leave Gunicorn's main thread asleep
  in its wait. The thread is created with every signal blocked (it inherits the
  mask), so all of them reach the main thread as before.
* Its ``_run`` returns soon after :meth:`MasterThread.wake` once ``stopping`` is set
  (it never blocks but in a wait the wake-up pair ends).
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

from . import at_fork


class MasterThread:
    """Start, stop, wake; subclasses give :meth:`_run`."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._owner = os.getpid()
        self._thread: threading.Thread | None = None
        self.stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        at_fork.register(self)

    # -- the main thread's side ------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        """Start the thread with every signal blocked in it (they stay the main
        thread's); also again after a fork."""
        if self._thread is not None or os.getpid() != self._owner:
            return
        self.stopping = False
        thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        try:
            thread.start()  # the new thread inherits the blocked mask
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self._thread = thread

    def stop(self) -> None:
        """Stop the thread and wait for it (what it is doing finishes first)."""
        self._pause()
        _paused.discard(self)

    def wake(self) -> None:
        """End the thread's current wait (called by the main loop)."""
        try:
            self._wake_w.send(b"x")
        except OSError:  # full: a wake-up is pending anyway; closed: stopped
            pass

    def _pause(self) -> bool:
        thread = self._thread
        if thread is None or os.getpid() != self._owner:
            return False
        self.stopping = True
        self.wake()
        if thread is not threading.current_thread():
            thread.join()
            _until_gone(thread.native_id)
        self._thread = None
        return True

    # -- the thread's side -----------------------------------------------------------

    def _run(self) -> None:
        raise NotImplementedError

    def wakeup_fileno(self) -> int:
        """What the thread polls to hear :meth:`wake`."""
        return self._wake_r.fileno()

    def drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    # -- fork (its part in :mod:`.at_fork`) ------------------------------------------

    def pause_for_fork(self) -> None:
        """Before a fork: stop the thread if it runs; :func:`resume_after_fork`
        starts it again in the parent."""
        if self._pause():
            _paused.add(self)

    def close_in_child(self) -> None:
        """A child has no such thread (threads do not survive fork): forget it, close
        its wake-up pair (a worker must not hold the master's descriptors)."""
        _paused.discard(self)
        self._thread = None
        self._wake_r.close()
        self._wake_w.close()


def _until_gone(native_id: int | None, limit: float = 0.1) -> None:
    """Until the OS thread has exited, not only its Python side: before 3.13,
    ``join()`` returns a moment earlier, and Python 3.12 counts the process's threads
    in ``/proc`` for its fork warning."""
    if native_id is None:
        return
    deadline = time.monotonic() + limit
    while os.path.exists(f"/proc/self/task/{native_id}") and time.monotonic() < deadline:
        time.sleep(0.0002)


#: The threads the last fork stopped, to start again in the parent.
_paused: set[MasterThread] = set()


def resume_after_fork() -> None:
    """In the parent, after a fork: start the threads the fork stopped. Called by the
    master right after it forked a worker, and from its next loop turn (any other
    fork: Gunicorn's USR2 re-exec). Not from an ``after_in_parent`` fork hook:
    Python 3.12+ count the threads for their fork warning after those hooks ran."""
    for thread in list(_paused):
        if os.getpid() == thread._owner:
            _paused.discard(thread)
            thread.start()
