"""The gevent server a worker runs on each listening socket of its slot.

Gunicorn's gevent worker builds a ``gevent.server.StreamServer`` per socket; the
prefork worker has it build :class:`SlotServer` instead, which differs in two ways:

* it accepts up to :data:`ACCEPT_BATCH` connections per wake-up. Gunicorn sets
  ``max_accept = 1`` whenever there is more than one worker, to keep one *shared*
  socket fair between workers; a slot's socket has one worker, and accepting one
  connection per loop turn only leaves the rest waiting in the queue;
* when it closes (HUP, ``max_requests``, TERM) it first accepts, without waiting, what
  is already queued, then closes the socket at once. Where the master still holds
  the socket this is a courtesy; where the worker holds the last reference (the
  whole server stopping) it keeps those connections from a reset. It then waits, in
  short steps, for the connections in hand (up to ``close_wait`` seconds), so the
  worker exits as soon as they are done rather than on its loop's next 1 s tick.

Handlers get the listener's address from :data:`listener_names`, taken while the
socket was open (Gunicorn's handler asks the listener for it first thing,
which fails once the socket is closed).
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from gevent.server import StreamServer

#: Connections accepted per wake-up of a slot's server (gevent's own default).
ACCEPT_BATCH = 100

#: Most queued connections a closing server accepts before its socket closes.
CLOSE_ACCEPT_LIMIT = 1024

#: This process's servers, one per listening socket of the worker's slot.
servers: list[StreamServer] = []

#: ``id(listener)`` -> its address, taken when its server was created.
listener_names: dict[int, Any] = {}


class SlotServer(StreamServer):  # type: ignore[misc]
    """gevent's StreamServer for a socket that only this worker accepts on."""

    #: Longest :meth:`close` waits for the connections in hand (the worker sets it
    #: to ``graceful_timeout``).
    close_wait = 0.0

    def __init__(self, listener: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(listener, *args, **kwargs)
        listener_names[id(listener)] = listener.getsockname()
        servers.append(self)

    def busy(self) -> bool:
        """Are connections still in hand?"""
        return self.pool is not None and self.pool.free_count() != self.pool.size

    @property
    def max_accept(self) -> int:
        return ACCEPT_BATCH

    @max_accept.setter
    def max_accept(self, value: int) -> None:
        """Gunicorn's shared-socket fairness setting does not apply here."""

    def close(self) -> None:
        if self.closed:
            return
        self.stop_accepting()
        self.accept_queued()
        super().close()
        deadline = time.monotonic() + self.close_wait
        while self.busy() and time.monotonic() < deadline:
            gevent.sleep(0.01)

    def accept_queued(self) -> None:
        for _ in range(CLOSE_ACCEPT_LIMIT):
            try:
                accepted = self.do_read()
            except OSError:
                return
            if not accepted:
                return
            self.do_handle(*accepted)
