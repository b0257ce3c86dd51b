"""The rescue channel: how a connection the master took crosses to a worker.

Each slot has one ``AF_UNIX``/``SOCK_SEQPACKET`` socket pair (:class:`Channel`),
made by the master before the first fork of a worker for that slot. The master
writes into one end (:mod:`gunicorn_prefork.master.rescue`); the slot's worker reads
the other (:mod:`gunicorn_prefork.worker.rescue_inbox`). A message is one byte, the
index of the listener (bind) the connection came in on, with exactly one file
descriptor; :data:`PROBE` (no descriptor) asks a stalled worker to show that its
loop runs.

Each slot also has a *hand-back* channel, the same kind of pair used the other way:
the master writes an ask (one byte: how many connections at most) into its end, the
worker's hand-back thread (:mod:`gunicorn_prefork.worker.handback_thread`) reads it
and writes back connections its stuck loop has not started on, one per message as
above; the master reads them from its own end (:meth:`Channel.take_handed`).

A descriptor passed with ``SCM_RIGHTS`` is installed by the kernel at the read;
whoever reads keeps one descriptor in reserve (:class:`Spare`) and frees it just for
that read, so a process at its ``nofile`` limit never gets a message with the
descriptor cut off (the client would be reset).

Invariants: :meth:`Channel.send` never drops a connection (False: the caller keeps
it); :meth:`Channel.take_left` never blocks and returns every connection it read.
"""

from __future__ import annotations

import os
import posix
import socket
from dataclasses import dataclass

#: The message that carries no connection: "show that your event loop runs".
PROBE = 255


class Spare:
    """One descriptor kept in reserve, freed just for a read that receives one.

    A descriptor passed with ``SCM_RIGHTS`` is installed by the kernel at the read;
    a process at its ``nofile`` limit gets the message with the descriptor cut off
    (``MSG_CTRUNC``): the connection is gone and its client is reset. Reading only
    while the reserve is held, freeing it for that one read, guarantees a free slot
    (as long as nothing else of the process opens one in between)."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self.take()

    def take(self) -> bool:
        """Hold a descriptor again; False at the limit (then do not read)."""
        if self._fd is None:
            try:
                self._fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:  # EMFILE, ENFILE
                return False
        return True

    def free(self) -> None:
        """Give the descriptor back."""
        if self._fd is not None:
            posix.close(self._fd)  # at once: gevent 25.8+ patches os.close to defer it
            self._fd = None

    def room_for_one(self) -> bool:
        """Free one descriptor for the read that follows at once (nothing may open
        one in between); False at the limit: do not read."""
        if not self.take():
            return False
        self.free()
        return True


@dataclass
class Channel:
    """One slot's socket pair: the master writes ``master_end``, workers read
    ``worker_end``."""

    master_end: socket.socket
    worker_end: socket.socket

    @classmethod
    def open(cls) -> Channel:
        master_end, worker_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        master_end.setblocking(False)
        return cls(master_end, worker_end)

    def send(self, message: int, fd: int | None = None) -> bool:
        """Send one message; False when nothing was sent: the channel is full, or the
        kernel refused (e.g. ``ETOOMANYREFS``, too many descriptors in flight). The
        caller keeps the connection: an error must never drop one (the stall tick
        swallows exceptions, and a dropped socket is a reset client)."""
        try:
            if fd is None:
                self.master_end.send(bytes([message]))
            else:
                socket.send_fds(self.master_end, [bytes([message])], [fd])
        except OSError:
            return False
        return True

    def take_left(self, spare: Spare | None = None) -> list[tuple[int, socket.socket]]:
        """What no worker read (the master: a retired slot's channel, or one no worker
        serves now). A worker reading at the same time gets each message whole or not
        at all. Never blocks (the worker end is non-blocking in workers too: gevent).
        (``socket.recv_fds`` ignores its ``flags`` in CPython 3.9-3.13: no MSG_DONTWAIT.)"""
        self.worker_end.setblocking(False)
        return _take_all(self.worker_end, spare)

    def take_handed(self, spare: Spare | None = None,
                    limit: int = 1024) -> list[tuple[int, socket.socket]]:
        """The master, from a hand-back channel: the connections its worker handed
        back (up to ``limit``). Never blocks."""
        return _take_all(self.master_end, spare, limit)

    def close(self) -> None:
        self.master_end.close()
        self.worker_end.close()


def _take_all(end: socket.socket, spare: Spare | None,
              limit: int = 1 << 30) -> list[tuple[int, socket.socket]]:
    """Every (listener index, connection) message waiting on ``end`` (non-blocking),
    reading only while ``spare`` gives a descriptor room."""
    left: list[tuple[int, socket.socket]] = []
    while len(left) < limit:
        if spare is not None and not spare.room_for_one():
            return left  # at the limit: the rest stays, unread
        try:
            data, fds, _, _ = socket.recv_fds(end, 1, 1)
        except (BlockingIOError, InterruptedError, OSError):
            return left
        if not data:
            return left
        for fd in fds:
            left.append((data[0], socket.socket(fileno=fd)))
    return left
