"""Gunicorn's wait for a connection's next request, without cutting one that arrived.

Gunicorn's gevent worker reads every request of a connection, the first one too,
under ``gevent.Timeout(keepalive)`` (``timeout_ctx``). When the worker's loop was held
up for longer than that (SIGSTOP, a CPU-bound view, a long GC pause), the timers of
connections it had accepted just before may fire before their requests, which
arrived meanwhile, are read: the connection is closed with its request unread and
the client gets a reset.

:func:`wait_for_request` gives that timeout (built by
:func:`gunicorn_prefork._gunicorn.rechecking_timeout`), except that when it fires
it looks at the connection first (``MSG_PEEK``, without waiting): when bytes are
waiting, the request is there and is read as soon as the greenlet runs, so the timer
starts over instead.
A connection that sends nothing (an idle keep-alive connection) is still closed after
``keepalive`` seconds, as Gunicorn does.

Invariants: the handler greenlet of a connection knows its socket
(:func:`serving`); a wait without one is Gunicorn's own ``gevent.Timeout``.
"""

from __future__ import annotations

import socket
from typing import Any

import gevent
import gevent.local

from .. import _gunicorn

_connection = gevent.local.local()


def serving(client: Any) -> None:
    """The current greenlet handles ``client`` (Worker.handle, before Gunicorn's)."""
    _connection.client = client


def wait_for_request(seconds: float) -> Any:
    """The context Gunicorn reads a request in, for the current greenlet."""
    client = getattr(_connection, "client", None)
    if client is None:
        return gevent.Timeout(seconds, False)
    return _gunicorn.rechecking_timeout(seconds, lambda: bytes_waiting(client))


def next_request_waiting() -> bool:
    """Has the current greenlet's client sent bytes beyond the request being answered
    (a pipelined request)? False outside a handler. (Never waits.)"""
    client = getattr(_connection, "client", None)
    return client is not None and bytes_waiting(client)


def bytes_waiting(client: Any) -> bool:
    """Has the peer sent bytes nobody read yet? (Never waits.)"""
    raw = _gunicorn.raw_socket(client)
    try:
        return bool(raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (OSError, ValueError):  # nothing yet, closed, reset
        return False
