"""Gunicorn's wait for a connection's next request, without cutting one that arrived.

Gunicorn's gevent worker reads every request of a connection, the first one too,
under ``gevent.Timeout(keepalive)`` (``timeout_ctx``). When the worker's loop was held
up for longer than that (SIGSTOP, a CPU-bound view, a long GC pause), the timers of
connections it had accepted just before may fire before their requests, which
arrived meanwhile, are read: the connection is closed with its request unread and
the client gets a reset.

:func:`wait_for_request` gives that wait, a :class:`RequestWait`, except that when
its time is up it looks at the connection first (``MSG_PEEK``, without waiting):
when bytes are waiting, the request is there and is read as soon as the greenlet
runs, so the timer starts over instead. A connection that sends nothing (an idle
keep-alive connection) is still closed after ``keepalive`` seconds, as Gunicorn
does: the block ends silently, as with ``gevent.Timeout(keepalive, False)``.

A :class:`RequestWait` serves every request of its connection and costs one libev
timer per wait (a ``gevent.Timeout`` per request cost 1.4 µs, 3 % of a worker's CPU
on hello world).

While it waits, a plain connection may be handed back to the master when the loop
is stuck (:mod:`.handback`): its wait offers it and withdraws it, and a handed-back
connection's time is up without a look at it.

Invariants: the handler greenlet of a connection knows its socket
(:func:`serving`); a wait without one is Gunicorn's own ``gevent.Timeout``; a wait's
timer is stopped and closed when its block ends, however it ends; what the timer
throws is a ``BaseException`` (as gevent's ``Timeout``) that only its own wait
catches.
"""

from __future__ import annotations

import socket
from typing import Any

import gevent
import gevent.local
from gevent import getcurrent

from .. import _gunicorn
from . import handback

_connection = gevent.local.local()


class NoRequest(BaseException):
    """Thrown into a handler whose connection sent nothing in time; its wait ends
    the block and swallows it."""


class RequestWait:
    """The context a connection's handler reads a request in (``keepalive`` s)."""

    __slots__ = ("_greenlet", "_thrown", "_timer", "client", "ending", "seconds")

    def __init__(self, client: Any, seconds: float = 0.0) -> None:
        self.seconds = seconds
        #: the connection's socket
        self.client = client
        #: the worker ends this kept connection after its response (shedding): it
        #: closes gently (:mod:`.lingering_close`)
        self.ending = False
        self._timer: Any = None
        self._greenlet: Any = None
        self._thrown: NoRequest | None = None

    def __enter__(self) -> RequestWait:
        self._greenlet = getcurrent()
        self._thrown = None
        self._start()
        handback.waits(self.client)
        return self

    def __exit__(self, typ: Any, value: Any, tb: Any) -> bool:
        self._stop()
        handback.wait_ends(self.client)
        return value is not None and value is self._thrown

    @property
    def pending(self) -> bool:
        """Is the timer running (inside the block, time not up)?"""
        return self._timer is not None and bool(self._timer.active)

    def _start(self) -> None:
        self._timer = gevent.get_hub().loop.timer(self.seconds)
        self._timer.start(self.time_up, update=True)

    def _stop(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.stop()
            timer.close()

    def time_up(self) -> None:
        """The timer's callback (the hub runs it): start over if the request is
        there, else end the block."""
        self._stop()
        if not handback.handed_back(self.client) and bytes_waiting(self.client):
            self._start()
            return
        self._thrown = NoRequest()
        self._greenlet.throw(self._thrown)


def serving(client: Any) -> None:
    """The current greenlet handles ``client`` (Worker.handle, before Gunicorn's)."""
    _connection.wait = RequestWait(client)


def wait_for_request(seconds: float) -> Any:
    """The context Gunicorn reads a request in, for the current greenlet."""
    wait = getattr(_connection, "wait", None)
    if wait is None:
        return gevent.Timeout(seconds, False)
    wait.seconds = seconds
    return wait


def next_request_waiting() -> bool:
    """Has the current greenlet's client sent bytes beyond the request being answered
    (a pipelined request)? False outside a handler. (Never waits.)"""
    wait = getattr(_connection, "wait", None)
    return wait is not None and bytes_waiting(wait.client)


def mark_ending() -> None:
    """The current greenlet's connection ends after this response (shedding)."""
    wait = getattr(_connection, "wait", None)
    if wait is not None:
        wait.ending = True


def ending(client: Any) -> bool:
    """Is ``client`` the current greenlet's connection, marked to end gently?"""
    wait = getattr(_connection, "wait", None)
    return wait is not None and wait.ending and wait.client is client


def bytes_waiting(client: Any) -> bool:
    """Has the peer sent bytes nobody read yet? (Never waits.)"""
    raw = _gunicorn.raw_socket(client)
    try:
        return bool(raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except (OSError, ValueError):  # nothing yet, closed, reset
        return False
