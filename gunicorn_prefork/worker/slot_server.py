"""The gevent server a worker runs on each listening socket of its slot.

Gunicorn's gevent worker builds a ``gevent.server.StreamServer`` per socket; the
prefork worker has it build :class:`SlotServer` instead, which differs in two ways:

* it accepts up to :data:`ACCEPT_BATCH` connections per wake-up. Gunicorn sets
  ``max_accept = 1`` whenever there is more than one worker, to keep one *shared*
  socket fair between workers; a slot's socket has one worker, and accepting one
  connection per loop turn only leaves the rest waiting in the queue;
* every connection it takes on (accepted, or passed in by the master) is reported
  at once, before its handler runs (:attr:`SlotServer.on_take`: the worker bumps its
  progress counter for the master's stall watch; it bumps it again when the handler
  starts, after a TLS handshake). Counting only when the handler starts made a
  worker whose handlers wait for TLS handshakes look stalled (issue 19). A TLS
  handshake costs the worker about a millisecond of CPU in the loop turn that
  accepted its connection: a connection yields to the loop before its handshake
  once the turn has run :data:`.loop_turn.TURN_BUDGET`, so that a burst of
  handshakes does not keep the loop from taking the next connections on (the stall
  watch took such a worker for stalled and moved connections off it);
* closing it runs the worker's stop sequence (:attr:`SlotServer.on_close`), which
  closes every server of the slot at once with :meth:`SlotServer.close_now`: stop
  accepting, accept without waiting what is already queued, close the socket.
  Where the master still holds the socket this is a courtesy; where the worker holds
  the last reference (the whole server stopping) it keeps those connections from a
  reset. Gunicorn's run loop calls ``close()`` on each server in turn; the first
  call does the work, the others find their server closed.

Handlers get the listener's address from :data:`listener_names`, taken while the
socket was open (Gunicorn's handler asks the listener for it first thing,
which fails once the socket is closed).
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from typing import Any, ClassVar

from gevent.server import StreamServer

from .. import _gunicorn
from . import handback, loop_turn

#: Connections accepted per wake-up of a slot's server (gevent's own default).
ACCEPT_BATCH = 100

#: Most turns of the loop a TLS connection lets go by, before its handshake, while
#: each of them has run past its budget when it comes to it.
HANDSHAKE_YIELDS = 8

#: Most queued connections a closing server accepts before its socket closes.
CLOSE_ACCEPT_LIMIT = 1024

#: This process's servers, one per listening socket of the worker's slot.
servers: list[StreamServer] = []

#: ``id(listener)`` -> its address, taken when its server was created.
listener_names: dict[int, Any] = {}


def busy() -> bool:
    """Does any server of this process still have connections in hand?"""
    return any(server.busy() for server in servers)


def taking_connections() -> bool:
    """Can any server of this process take a connection on (its pool not full)?"""
    return any(not _gunicorn.pool_full(server) for server in servers)


def close_all(take_queued: bool = True) -> None:
    """Stop accepting on every server of the slot, take their queues (unless
    ``take_queued`` is false: the master's copy keeps them for others), close them."""
    for server in servers:
        server.stop_accepting()
    for server in servers:
        server.close_now(take_queued)


class SlotServer(StreamServer):  # type: ignore[misc]
    """gevent's StreamServer for a socket that only this worker accepts on."""

    #: What ``close()`` runs (the worker sets it to its stop sequence); by default
    #: the server just closes itself.
    on_close: ClassVar[Callable[[], None] | None] = None
    #: Called for every connection taken on, before its handler (the worker's progress
    #: and load), and once when it is done with (closed: its handler ended, or its TLS
    #: handshake failed).
    on_take: ClassVar[Callable[[], None] | None] = None
    on_release: ClassVar[Callable[[], None] | None] = None
    #: the worker's ``log.debug`` (a failed TLS handshake)
    log_debug: ClassVar[Callable[..., None] | None] = None

    def __init__(self, listener: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(listener, *args, **kwargs)
        listener_names[id(listener)] = listener.getsockname()
        #: its listener's index in the slot (the bind's, in the master's order too)
        self.index = len(servers)
        #: serves a connection the master passed in (see :mod:`.rescue_inbox`); set
        #: when the server starts, None before (see :meth:`init_socket`)
        self.serve_passed: Callable[[int], None] | None = None
        servers.append(self)

    def init_socket(self) -> None:
        """gevent picks the handler here, at ``start()``, not in ``__init__``: with
        TLS it swaps in ``wrap_socket_and_handle``. What serves a passed connection
        is captured after that, so a moved connection gets the same handler (TLS
        included) as one this server accepts."""
        super().init_socket()
        self.serve_passed = _gunicorn.passed_connection_server(self, self._taken)

    def _taken(self, sock: Any) -> None:
        """A connection taken on (accepted or passed in), before its handler runs:
        it waits until the handler begins (the hand-back may take it meanwhile)."""
        handback.taken(self.index, sock)
        if SlotServer.on_take is not None:
            SlotServer.on_take()

    def wrap_socket_and_handle(self, client_socket: Any, address: Any) -> Any:
        """gevent's handler for a TLS server (its handshake, then :meth:`handle`),
        after a yield to the loop when its turn has run past its budget.

        A client gone in the middle of its handshake is one line at debug level
        (gevent's own method lets the error out of the greenlet: a traceback in the
        error log for each, as with ``-k gevent`` on Gunicorn 24+, whose handshake is
        no longer deferred to Gunicorn's handler). A connection the worker handed
        back before its handshake began is dropped here (:mod:`.handback`)."""
        if not handback.starts(client_socket):
            return None
        for _ in range(HANDSHAKE_YIELDS):  # each yield: a later turn, the others first
            if not loop_turn.over_budget():
                break
            loop_turn.yield_to_loop()
        try:
            tls_socket = self.wrap_socket(client_socket, **self.ssl_args)
        except (ssl.SSLError, OSError) as exc:
            if SlotServer.log_debug is not None:
                SlotServer.log_debug("TLS handshake with %s failed: %s", address, exc)
            return None
        with contextlib.closing(tls_socket):
            return self.handle(tls_socket, address)

    def do_handle(self, *args: Any) -> None:
        """gevent's hand-off of an accepted connection to its handler (greenlet)."""
        self._taken(args[0])
        super().do_handle(*args)

    def do_close(self, *args: Any) -> None:
        """gevent's close of a connection taken on, once its handler is done."""
        try:
            handback.closing(args[0])
            super().do_close(*args)
        finally:
            if SlotServer.on_release is not None:
                SlotServer.on_release()

    def busy(self) -> bool:
        """Are connections still in hand?"""
        return _gunicorn.busy(self)

    @property
    def max_accept(self) -> int:
        return ACCEPT_BATCH

    @max_accept.setter
    def max_accept(self, value: int) -> None:
        """Gunicorn's shared-socket fairness setting does not apply here."""

    def close(self) -> None:
        if self.closed:
            return
        if SlotServer.on_close is not None:
            SlotServer.on_close()
        self.close_now()

    def close_now(self, take_queued: bool = True) -> None:
        """Stop accepting, accept what is queued (without waiting), close."""
        if self.closed:
            return
        self.stop_accepting()
        if take_queued:
            self.accept_queued()
        super().close()

    def accept_queued(self) -> None:
        for _ in range(CLOSE_ACCEPT_LIMIT):
            if not _gunicorn.accept_one(self):
                return
