"""A worker's end of its slot's rescue channel: connections the master moved here.

The master takes connections queued on a stalled slot and passes them to live
workers (:mod:`gunicorn_prefork.master.rescue`). In each worker a greenlet reads its slot's
channel and hands every connection to the server of the listener it came in on
(the same bind), which serves it exactly like one it accepted: the same pool
(``worker_connections``), TLS, handler and access log. A probe from the master
(the worker was seen stalled) is answered by bumping the slot's progress counter,
unless the pool is full, which is a stall of its own.

A connection arrives as a descriptor (``SCM_RIGHTS``), which the kernel can only
install while the worker has a descriptor to spare: at its ``nofile`` limit it cuts
the descriptor off (``MSG_CTRUNC``) and the client is reset. So the inbox keeps one
descriptor in reserve, reads only when a message is there, and frees the reserve
just for that read (nothing else of the worker runs in between: no yield); when it
cannot take a new reserve (the worker is at its limit) it leaves the channel alone
until a descriptor frees up. What it leaves there is the master's to move on
(:meth:`gunicorn_prefork.master.rescue.Rescue.tick` takes back what a stalled slot left
unread).

Invariants: the inbox reads only while the worker serves; :meth:`Inbox.stop` (the
worker stops accepting) closes its socket, so nothing is read after it and a message
is either handled here or left in the channel for the slot's next worker; a message
read is served even if the worker's servers closed meanwhile; the greenlet never
raises into the hub.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Any

import gevent
import gevent.socket

from ..fork.rescue_channel import PROBE, Spare

#: How often an inbox at the worker's descriptor limit looks whether one freed up.
NO_DESCRIPTOR_RETRY = 0.05


class Inbox:
    """Reads the slot's channel in a greenlet while the worker serves."""

    def __init__(self, fd: int, servers: Sequence[Any], on_probe: Callable[[], None]) -> None:
        self._sock = gevent.socket.socket(fileno=fd)
        self._servers = servers
        self._on_probe = on_probe
        self._spare = Spare()

    def start(self) -> None:
        gevent.spawn(self._run)

    def stop(self) -> None:
        """No more messages: those not read stay for the slot's next worker.

        Closing the socket is what makes this hold: gevent swaps in a closed socket
        at once, so a read the greenlet has not made yet fails, even when the channel
        turned readable and the hub resumes the greenlet before it sees the stop (it
        did, at the worker's exit, after its run loop returned: a connection read
        then was never served and the client got a reset). Killing the greenlet is
        not enough: the kill is delivered by the hub, after such a wake-up.
        """
        self._sock.close()
        self._spare.free()

    def _run(self) -> None:
        # Gunicorn starts the servers before the hub first runs this greenlet; a
        # server not started yet has no handler for a passed connection (TLS!)
        while any(server.serve_passed is None for server in self._servers):
            gevent.sleep(0.01)
        while True:
            try:
                self._sock.settimeout(None)
                if not self._sock.recv(1, socket.MSG_PEEK):  # waits for a message
                    return
            except OSError:  # closed by stop()
                return
            if not self._spare.room_for_one():  # at the limit: leave it in the channel
                gevent.sleep(NO_DESCRIPTOR_RETRY)
                continue
            # one descriptor free for this read: no yield until it
            try:
                self._sock.settimeout(0.0)  # the message may be gone (the master took it)
                data, fds, _flags, _ = socket.recv_fds(self._sock, 1, 1)
            except BlockingIOError:
                continue
            except OSError:  # closed by stop()
                return
            if not data:
                return
            # (MSG_CTRUNC in flags, descriptors cut off, cannot happen: the reserve)
            self._take(data[0], fds)

    def _take(self, index: int, fds: list[int]) -> None:
        if index == PROBE and not fds:
            self._on_probe()
            return
        for fd in fds:
            if index >= len(self._servers):
                socket.socket(fileno=fd).close()
                continue
            try:  # also after the server closed: it was read, so it is ours to serve
                self._servers[index].serve_passed(fd)
            except Exception:  # a client gone already: its socket is closed
                pass
