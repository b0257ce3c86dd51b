"""Moving connections queued on a stalled slot to live workers: the master's side.

Steering keeps *new* connections away from a stalled slot, but those already in its
accept queue would wait for the stall to end (a CPU-bound view, a blocking driver,
SIGSTOP, a full ``worker_connections`` pool). The master holds every slot's
listening socket, so it can take them itself: it accepts them and passes each one
(``SCM_RIGHTS``) to a live worker, which serves it like one it accepted.

Channels
--------
Each slot has one ``AF_UNIX``/``SOCK_SEQPACKET`` socket pair, made by the master
before the first fork of a worker for that slot. The master writes into one end;
the slot's worker reads the other (:mod:`gunicorn_prefork.worker.rescue_inbox`). The master
keeps *both* ends open: a message a worker did not read (it exited, crashed, handed
its slot over) stays in the channel for the slot's next worker, and a channel is
only closed when its slot is retired, after the master has moved what was left in
it to another slot. Every other process closes the ends it does not use right after
its fork (see :meth:`Rescue.closed_in_child`).

A message is one byte, the index of the listener (bind) the connection came in on
(every slot has one listener per bind, in the same order), with exactly one file
descriptor; :data:`PROBE` (no descriptor) asks a stalled worker to show it runs:
its inbox reads it as soon as its event loop turns, which ends the stall even when
no connection is left for it to take.

Hand-back
---------
A stuck worker also holds connections it has not started on (accepted in its last
batch, or keep-alive ones waiting for their next request). Each slot has a second
channel, its *hand-back* channel: the master asks a newly stalled slot's worker
(once per stall, for at most the room the other workers have), and the worker's
hand-back thread answers with those connections; it also hands them back on its
own when it sees its loop stuck in CPU-bound code (:mod:`gunicorn_prefork.worker.handback_thread`).
:meth:`Rescue.collect` reads them on every tick into :attr:`Rescue.pending`, from
where they go on like the others, and says which slots handed back (the stall
watch takes those for stalled).

Invariants: every connection the master accepts (or takes unread from the channel
of a slot no worker serves now) is either sent (the kernel holds it until a worker
reads it) or kept in :attr:`Rescue.pending` and sent on the next tick; the master
never accepts while anything is pending; nothing here logs (it runs in the stall
watch's thread). The one call from the master's main loop, :meth:`Rescue.keep_only`,
never runs at the same time as a tick: both hold the steering lock (see
:mod:`.steering`), and ticks run only in the watch thread, never in a signal handler
of the main thread.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..fork.rescue_channel import PROBE, Channel, Spare
from . import at_fork
from .slot_table import queued

#: Most connections taken off one stalled slot per tick of the stall watch.
MOVE_LIMIT = 64

#: Backstop for the master's ``accept()``: the listening socket's file status flags
#: are shared with the workers, and Gunicorn's gevent worker briefly makes it
#: blocking while it boots; an accept that finds the queue emptied by a worker must
#: never block the master for longer than this.
ACCEPT_TIMEOUT = struct.pack("ll", 0, 2000)  # 2 ms


def room_left(places: object, held: int | None, unread: int) -> int | None:
    """A target slot's free places: ``places`` (``worker_connections``) less what
    its worker holds and what waits in its channel; None when not known."""
    if held is None or not isinstance(places, int) or places <= 0:
        return None
    return places - held - unread




class Rescue:
    """The channels of one master's slots and the connections moved through them."""

    def __init__(self) -> None:
        at_fork.register(self)
        self._channels: dict[Any, Channel] = {}  # slot (by identity) -> its channel
        self._handback: dict[Any, Channel] = {}  # slot -> its hand-back channel
        self._asked: set[Any] = set()
        #: connections stuck workers handed back since the start
        self.handed_back = 0
        #: (slot number, how many) for each hand-back read, for the main loop's report
        self.handed_events: list[tuple[int, int]] = []
        #: accepted connections no channel had room for: (listener index, socket)
        self.pending: list[tuple[int, socket.socket]] = []
        self._probed: set[Any] = set()
        self._next = 0
        #: connections moved to another slot since the start
        self.moved = 0
        #: a descriptor in reserve for reading what workers left unread
        self.spare = Spare()
        #: a target slot's free places (``worker_connections`` less what its worker
        #: holds and what waits in its channel); None: not known, no limit. Nothing
        #: is moved to a slot without room: it would wait there, behind the
        #: connections its worker takes from its own queue, and be moved again when
        #: that worker's full pool stalls (a full-pools burst bounced connections
        #: between workers, and its slowest request took far longer than with
        #: stock Gunicorn; figures: benchmarks/README.md)
        self.room: Callable[[Any], int | None] | None = None

    def close_in_child(self) -> None:
        """A worker must not hold the master's pending connections: a copy of a
        client's socket in another process would keep the connection open after
        its real owner closed it."""
        for _, conn in self.pending:
            conn.close()
        self.pending.clear()
        self.spare.free()

    # -- the channels ------------------------------------------------------------------

    def channel_for(self, slot: Any) -> Channel:
        """The slot's channel, opened on first use (master, before a fork)."""
        channel = self._channels.get(slot)
        if channel is None:
            channel = self._channels[slot] = Channel.open()
        return channel

    def handback_for(self, slot: Any) -> Channel:
        """The slot's hand-back channel, opened on first use (master, before a fork)."""
        channel = self._handback.get(slot)
        if channel is None:
            channel = self._handback[slot] = Channel.open()
        return channel

    def channel_fds(self) -> list[int]:
        """The workers' ends of the channels (readable: a message is unread) and the
        master's ends of the hand-back channels (readable: a connection handed back)."""
        return ([channel.worker_end.fileno() for channel in list(self._channels.values())]
                + [channel.master_end.fileno() for channel in list(self._handback.values())])

    def closed_in_child(self, slot: Any) -> list[socket.socket]:
        """What a worker for ``slot`` closes after its fork: every end but its own."""
        ends = []
        for own, channels in ((self._channels.get(slot), self._channels),
                              (self._handback.get(slot), self._handback)):
            for channel in channels.values():
                ends.append(channel.master_end)
                if channel is not own:
                    ends.append(channel.worker_end)
        return ends

    def keep_only(self, slots: Sequence[Any], targets: Sequence[Any]) -> None:
        """Close the channels of retired slots, moving what is left in them first."""
        live = set(slots)
        for key in [key for key in self._channels if key not in live]:
            channel = self._channels.pop(key)
            self.pending.extend(channel.take_left(self.spare))
            channel.close()
            self._probed.discard(key)
        for key in [key for key in self._handback if key not in live]:
            handback = self._handback.pop(key)
            self._collect_from(key, handback)  # what its worker handed back last
            handback.close()
            self._asked.discard(key)
        self._flush(targets)

    # -- moving connections ----------------------------------------------------------

    def tick(self, stalled: Sequence[Any], targets: Sequence[Any]) -> None:
        """From the stall watch, on every tick: take back what stalled slots left
        unread in their channels, probe them, move their queues (a slot stalled
        again after its stall ended is probed again)."""
        self._probed &= set(stalled)
        self._asked &= set(stalled)
        for slot in stalled:
            self._take_back(slot, targets)
            self.probe(slot)
            self.ask(slot, targets)
            self.move(slot, targets)
        if not stalled:
            self._flush(targets)

    def probe(self, slot: Any) -> None:
        """Ask a newly stalled slot's worker to show it runs (once per stall)."""
        if slot in self._probed:
            return
        channel = self._channels.get(slot)
        if channel is not None and channel.send(PROBE):
            self._probed.add(slot)

    def ask(self, slot: Any, targets: Sequence[Any]) -> None:
        """Ask a newly stalled slot's worker for the connections it has not started
        on (once per stall), at most as many as the targets have room for."""
        channel = self._handback.get(slot)
        if slot in self._asked or channel is None or not targets:
            return
        rooms = [self.room(target) if self.room is not None else None for target in targets]
        room = 255 if None in rooms else min(255, sum(max(0, r or 0) for r in rooms))
        if room > 0 and channel.send(room):
            self._asked.add(slot)

    def collect(self) -> list[Any]:
        """Read what workers handed back into :attr:`pending`; returns their slots."""
        return [slot for slot, channel in list(self._handback.items())
                if self._collect_from(slot, channel)]

    def _collect_from(self, slot: Any, channel: Channel) -> int:
        handed = channel.take_handed(self.spare)
        if handed:
            self.pending.extend(handed)
            self.handed_back += len(handed)
            self.handed_events.append((getattr(slot, "number", -1), len(handed)))
        return len(handed)

    def move(self, source: Any, targets: Sequence[Any]) -> int:
        """Accept what is queued on ``source`` (up to :data:`MOVE_LIMIT`) and pass it
        to ``targets`` in turn; returns how many were moved."""
        if not targets or not self._flush(targets):
            return 0
        moved = 0
        for index, listener in enumerate(source.sockets):
            sock = getattr(listener, "sock", None)
            if sock is None or not queued(listener):  # (one getsockopt when idle)
                continue
            self._never_block(sock)
            while moved < MOVE_LIMIT and (first := self._with_room(targets)) is not None:
                try:
                    conn, _ = sock.accept()
                except OSError:  # BlockingIOError: nothing (left) queued
                    break
                moved += 1
                if not self._send(index, conn, targets, first):
                    self.pending.append((index, conn))
                    self.moved += moved
                    return moved
        self.moved += moved
        return moved

    def move_unserved(self, source: Any, targets: Sequence[Any]) -> int:
        """A slot no worker serves now (its worker crashed or left, the next one is
        not serving yet): pass on what its channel holds unread, then its queue.
        A probe taken with them is sent again on the next tick if the slot still
        stalls (its next worker must get one); a worker still reading the channel
        meanwhile takes each message or leaves it whole."""
        if not targets:
            return 0
        self._take_back(source, targets)
        return self.move(source, targets)

    def _take_back(self, source: Any, targets: Sequence[Any]) -> None:
        """What ``source``'s worker left unread in its channel goes to ``targets``:
        moved there before it stalled, or it cannot take a descriptor (its ``nofile``
        limit). A probe taken with them is sent again (by :meth:`probe`)."""
        channel = self._channels.get(source)
        if channel is None or not targets:
            return
        unread = channel.take_left(self.spare)
        self._probed.discard(source)
        self.pending.extend(unread)
        self.moved += len(unread)

    def _flush(self, targets: Sequence[Any]) -> bool:
        while self.pending and targets:
            index, conn = self.pending[0]
            if not self._send(index, conn, targets):
                return False
            self.pending.pop(0)
        return not self.pending

    def unread(self, slot: Any) -> int:
        """Messages waiting in ``slot``'s channel for its worker (one byte each)."""
        channel = self._channels.get(slot)
        if channel is None:
            return 0
        try:
            raw = fcntl.ioctl(channel.worker_end.fileno(), termios.FIONREAD, b"\0" * 4)
        except OSError:
            return 0
        return int(struct.unpack("i", raw)[0])

    def _has_room(self, target: Any) -> bool:
        room = self.room(target) if self.room is not None else None
        return room is None or room > 0

    def _in_turn(self, targets: Sequence[Any], start: int | None = None) -> Iterator[int]:
        """Indices of ``targets`` in round-robin order, from ``start`` (default: the
        one after the last target that got a connection)."""
        first = self._next if start is None else start
        return ((first + step) % len(targets) for step in range(len(targets)))

    def _with_room(self, targets: Sequence[Any]) -> int | None:
        """Where in ``targets`` the next connection goes (round robin from the last
        one, the first with room); None: no target has room."""
        return next((at for at in self._in_turn(targets) if self._has_room(targets[at])),
                    None)

    def _send(self, index: int, conn: socket.socket, targets: Sequence[Any],
              checked: int | None = None) -> bool:
        """Pass ``conn`` to the first target with room, from ``checked`` (a target
        whose room the caller has just read: not read again) or the next in turn."""
        for at in self._in_turn(targets, checked):
            target = targets[at]
            channel = self._channels.get(target)
            if channel is None or (at != checked and not self._has_room(target)) \
                    or not channel.send(index, conn.fileno()):
                continue
            self._next = (at + 1) % len(targets)
            conn.close()  # the kernel holds it for the target's worker now
            return True
        return False

    @staticmethod
    def _never_block(sock: socket.socket) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, ACCEPT_TIMEOUT)
