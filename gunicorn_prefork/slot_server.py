"""The gevent server a worker runs on each listening socket of its slot.

Gunicorn's gevent worker builds a ``gevent.server.StreamServer`` per socket; the
prefork worker has it build :class:`SlotServer` instead, which differs in two ways:

* it accepts up to :data:`ACCEPT_BATCH` connections per wake-up. Gunicorn sets
  ``max_accept = 1`` whenever there is more than one worker, to keep one *shared*
  socket fair between workers; a slot's socket has one worker, and accepting one
  connection per loop turn only leaves the rest waiting in the queue;
* when it closes (HUP, ``max_requests``, TERM) it first accepts, without waiting, what
  is already queued and lets those handlers start; then the socket closes. Where the
  master still holds the socket this is a courtesy; where the worker holds the last
  reference (the whole server stopping) it keeps those connections from a reset.
"""

from __future__ import annotations

from typing import Any

import gevent
from gevent.server import StreamServer

#: Connections accepted per wake-up of a slot's server (gevent's own default).
ACCEPT_BATCH = 100

#: Most queued connections a closing server accepts before its socket closes.
CLOSE_ACCEPT_LIMIT = 1024

#: This process's servers, one per listening socket of the worker's slot.
servers: list[StreamServer] = []


class SlotServer(StreamServer):  # type: ignore[misc]
    """gevent's StreamServer for a socket that only this worker accepts on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        servers.append(self)

    @property
    def max_accept(self) -> int:
        return ACCEPT_BATCH

    @max_accept.setter
    def max_accept(self, value: int) -> None:
        """Gunicorn's shared-socket fairness setting does not apply here."""

    def close(self) -> None:
        if not self.closed:
            self.stop_accepting()
            self.accept_queued()
            # Let every handler spawned so far start: Gunicorn's first step is
            # ``listener.getsockname()``, which fails once the socket is closed.
            gevent.sleep(0)
        super().close()

    def accept_queued(self) -> None:
        for _ in range(CLOSE_ACCEPT_LIMIT):
            try:
                accepted = self.do_read()
            except OSError:
                return
            if not accepted:
                return
            self.do_handle(*accepted)
