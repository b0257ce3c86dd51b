"""Which connections a worker holds and has not started on, and who gets each one.

A worker holds connections it has not started on: accepted (or passed in by the
master) while its handler greenlet has not run yet, and plain keep-alive
connections whose handler waits for the next request with nothing of it read. While
the worker's loop is stuck (CPU-bound Python, a blocking call), another worker could
serve them. Two parties may take such a connection:

* the worker's loop *starts* on it (:meth:`Claims.start`: its handler begins, or
  reads the first bytes of its next request, :meth:`Claims.read`);
* the hand-back thread (:mod:`.handback_thread`) *hands it back* to the master
  (:meth:`Claims.hand_back`), which passes it to another worker.

Each connection is started or handed back, never both (see :class:`Claims`: flags
on each connection, and one unpatched ``_thread`` lock the thread holds while it
hands back; the thread is a native one, gevent's locks are greenlet locks).

Invariants: a connection leaves :data:`WAITING` only with its side's flag raised
and the other's seen lowered (or, for the loop, under the lock); a handed-back
connection never changes state again, and its worker neither reads from it nor
writes to it (:meth:`Claims.read` answers end-of-stream without reading); ``send``
runs under the lock, so the descriptor it sends is still the connection's (the loop
closes a connection only after :meth:`Claims.forget`, which first starts it: no
descriptor number a closed connection had is ever sent); after :meth:`Claims.close`
nothing is handed back; nothing here touches gevent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

#: The loop is on it (or it was never offered): only the loop changes it.
STARTED = 0
#: Offered: the loop has not started on it, the thread may hand it back.
WAITING = 1
#: Handed back: the worker drops its descriptor without reading or writing.
HANDED = 2

#: What a handed-back connection reads as: end of stream (Gunicorn ends it quietly).
NOTHING = b""


class Claim:
    """One connection's part in the claims: its descriptor and listener index (what
    the thread sends), its state, and whether it may wait for its next request as a
    movable connection (``clean``: nothing of its next request read into Gunicorn's
    buffers, no body left unread)."""

    __slots__ = ("clean", "fd", "index", "reading", "request", "state", "taking")

    def __init__(self, fd: int, index: int) -> None:
        self.fd = fd
        self.index = index
        self.state = STARTED
        self.clean = True
        #: the request it answered last (the thread judges from it whether the
        #: connection may move: :class:`Claims`' ``movable``); None: none yet
        self.request: Any = None
        #: the loop is on it (Dekker's flags, see :class:`Claims`)
        self.reading = False
        #: the thread is on it
        self.taking = False


class Claims:
    """The connections the worker holds (registered at accept, forgotten at close),
    each with its state.

    The loop takes no lock on a request's path. Only the loop moves a connection
    from :data:`STARTED` (to :data:`WAITING`: no race, the thread never touches a
    started one), and the loop and the thread each move a waiting one (the loop to
    :data:`STARTED`, the thread to :data:`HANDED`) by Dekker's algorithm: each side
    raises its flag on the connection (``reading``, ``taking``), then looks at the
    other's; the GIL makes these loads and stores sequentially consistent, so at
    most one side goes on. The thread backs off a connection the loop is on; the
    loop, seeing the thread on one, waits under the lock (which the thread holds for
    its whole pass) for the thread's verdict. The registry is a dict, changed and
    copied in single C calls (under the GIL).
    """

    def __init__(self, lock: Any = None,
                 movable: Callable[[Claim], bool] | None = None) -> None:
        #: an unpatched lock in a worker (see the module's docstring)
        self._lock = lock if lock is not None else threading.Lock()
        #: may this waiting connection move? (asked by the thread, with the loop off
        #: it: what it answered last is settled); None: every waiting one may
        self._movable = movable
        self._held: dict[Claim, None] = {}
        self._closed = False

    def register(self, claim: Claim) -> None:
        """The loop: a connection taken on (it waits until its handler begins)."""
        claim.state = WAITING
        self._held[claim] = None

    def forget(self, claim: Claim) -> None:
        """The loop: the connection is about to be closed (handed back or not)."""
        self.start(claim)
        self._held.pop(claim, None)

    def close(self) -> None:
        """The loop: the worker stops serving; nothing is handed back any more."""
        with self._lock:
            self._closed = True

    def offer(self, claim: Claim) -> None:
        """The loop: ``claim``'s connection waits (not started); the thread may take it."""
        if claim.state == STARTED:
            claim.state = WAITING

    def _enter(self, claim: Claim) -> bool:
        """The loop raises its flag on a connection it will start on; False: the
        connection was handed back (the flag is lowered again)."""
        claim.reading = True
        if claim.taking or claim.state == HANDED:
            with self._lock:  # the thread's pass is over: its verdict stands
                if claim.state == HANDED:
                    claim.reading = False
                    return False
        return True

    def start(self, claim: Claim) -> bool:
        """The loop starts on ``claim``'s connection (or stops offering it); False:
        it was handed back, the loop must drop it."""
        if claim.state == STARTED:
            return True
        if not self._enter(claim):
            return False
        claim.state = STARTED
        claim.reading = False
        return True

    def read(self, claim: Claim, recv: Callable[..., bytes], *args: Any) -> bytes:
        """The loop reads from a waiting connection: ``recv(*args)`` (which must not
        wait); the connection is started once it returned or failed.
        ``BlockingIOError`` (nothing there yet) leaves it waiting. A handed-back
        connection is not read: :data:`NOTHING`."""
        if not self._enter(claim):
            return NOTHING
        try:
            data = recv(*args)
        except BlockingIOError:
            claim.reading = False
            raise
        except BaseException:
            claim.state, claim.reading = STARTED, False
            raise
        claim.state, claim.reading = STARTED, False
        return data

    def hand_back(self, send: Callable[[int, int], bool], limit: int) -> int:
        """The thread: pass up to ``limit`` waiting connections, oldest first, to
        ``send(index, fd)`` (under the lock; False: it could not, stop there);
        returns how many were handed back."""
        handed = 0
        with self._lock:
            for claim in [] if self._closed else list(self._held):
                if handed >= limit:
                    break
                if claim.state != WAITING:
                    continue
                claim.taking = True
                if claim.reading or claim.state != WAITING or (
                        self._movable is not None and not self._movable(claim)):
                    claim.taking = False  # the loop is on it, or it must stay
                    continue
                sent = send(claim.index, claim.fd)
                if sent:
                    claim.state = HANDED
                    handed += 1
                claim.taking = False
                if not sent:
                    break
        return handed

    def waiting(self) -> int:
        """How many connections wait now (a moment's look, without the lock)."""
        return sum(1 for claim in list(self._held) if claim.state == WAITING)
