"""The worker's hand-back thread: gives the master the connections the worker holds
and has not started on, while the worker's loop is stuck.

A gevent worker runs one greenlet at a time: a CPU-bound view, an unpatched
blocking call or a long GC pause holds up every connection the worker holds. Python
code in such a view still lets the GIL go every switch interval, and a blocking C
call lets it go while it blocks, so a *native* thread (started with the unpatched
``_thread.start_new_thread``) runs meanwhile. This one waits on the worker's end of
its slot's hand-back channel (:mod:`gunicorn_prefork.fork.rescue_channel`) and hands
back the waiting connections of :mod:`.claims` (each one a message: the listener's
index and the descriptor, ``SCM_RIGHTS``):

* when the master asks (its stall watch saw the slot's queue wait: the message is
  how many to hand back, at most), once the loop has begun no turn for
  :data:`STUCK_AFTER` (busy or blocked in a call); an ask is forgotten when the
  loop begins a turn before that: a busy loop's long turn, not a stuck one;
* on its own, when the loop has begun no turn for :data:`STUCK_AFTER` while the
  worker's main thread ran on a CPU for at least :data:`BUSY_SHARE` of that time
  (``/proc/self/task/PID/schedstat``): a CPU-bound loop. With
  keep-alive clients only, nothing queues on the slot, so the master sees no stall;
  the master takes such a hand-back for a stall of the slot.

It costs nothing while the loop is idle: it sleeps in ``poll()`` on the channel and
on a pipe the loop writes to when its next turn begins (:func:`.loop_turn.wake_on_next_turn`,
asked only when the thread saw the loop idle). While the loop turns, it looks every
:data:`SAMPLE` seconds.

Invariants: it exists only in a worker, started after the fork; it blocks every
signal; it never touches a gevent object (hub, greenlets, patched sockets or locks)
and never logs (the logging module's locks are gevent's in a worker); it never
blocks on a send (a full channel leaves the rest waiting for the next look); it ends
when the master's end of the channel is gone.
"""

from __future__ import annotations

import array
import os
import select
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

from .claims import Claims

#: How long the loop may run one turn, busy on a CPU, before the thread hands back.
STUCK_AFTER = 0.05

#: How often the thread looks while the loop turns.
SAMPLE = 0.025

#: The share of the time the main thread ran on a CPU while the loop began no turn
#: that makes the loop busy (stuck), not idle or blocked. (Its state letter does
#: not tell: while this thread holds the GIL, a CPU-bound main thread waits for it.)
BUSY_SHARE = 0.25

#: Most connections handed back at once when nobody said how many.
LIMIT = 255


class HandBackThread:
    """One worker's thread (see the module's docstring)."""

    def __init__(self, channel: socket.socket, claims: Claims, turns: Callable[[], int],
                 wake_on_next_turn: Callable[[int | None], None],
                 originals: Callable[[str, str], Any]) -> None:
        #: the worker's end of its slot's hand-back channel (an unpatched socket)
        self._channel = channel
        self._claims = claims
        self._turns = turns
        self._wake_on_next_turn = wake_on_next_turn
        self._poll = originals("select", "poll")
        self._start_thread = originals("_thread", "start_new_thread")
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._schedstat = os.open(f"/proc/self/task/{os.getpid()}/schedstat",
                                  os.O_RDONLY | os.O_CLOEXEC)
        #: connections handed back (read by tests)
        self.handed = 0

    def start(self) -> None:
        self._start_thread(self._run, ())

    def _run(self) -> None:
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
            self._serve()
        except BaseException:  # nothing to tell (it never logs): the worker serves on
            pass
        finally:
            self._wake_on_next_turn(None)

    def _serve(self) -> None:
        poller = self._poll()
        channel = self._channel.fileno()
        poller.register(channel, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        last, since, timing = self._turns(), time.monotonic(), True
        ran_at, ran_since = 0.0, -1  # the first look at a loop that stood still
        asked, asked_at = 0, -1  # the master's ask (how many), at which turn
        while True:
            for fd, _ in poller.poll(int(SAMPLE * 1000) if timing else None):
                if fd == self._wake_r:
                    self._drain()
                elif fd == channel:
                    ask = self._ask()
                    if ask is None:
                        return  # the master's end is gone
                    asked, asked_at, timing = max(asked, ask), self._turns(), True
            now, turns = time.monotonic(), self._turns()
            if asked and turns != asked_at:
                asked = 0  # the loop moved on: the master saw a queue wait, not a stuck loop
            if turns != last:  # the loop moves (the common case: no file read)
                last, since, ran_since, timing = turns, now, -1, True
                continue
            if asked and now - since >= STUCK_AFTER:  # stuck, busy or blocked
                self._hand_back(asked)
                asked = 0
                continue
            ran = self._ran()
            if ran_since < 0:
                ran_at, ran_since, timing = now, ran, True
                continue
            if ran - ran_since < (now - ran_at) * BUSY_SHARE * 1e9:
                # idle in its poll, or blocked in a call (asked: keep looking); else
                # sleep until its next turn begins
                timing = bool(asked)
                if not timing:
                    self._wake_on_next_turn(self._wake_w)
                    timing = self._turns() != last
                    if timing:
                        self._wake_on_next_turn(None)
                continue
            timing = True
            if now - since >= STUCK_AFTER and self._claims.waiting():
                self._hand_back(max(asked, LIMIT))
                asked = 0

    def _ask(self) -> int | None:
        """The master's ask: how many at most (0: none to read); None when the
        channel is closed."""
        try:
            ask = self._channel.recv(1, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            return None
        return ask[0] if ask else None

    def _hand_back(self, limit: int) -> None:
        self.handed += self._claims.hand_back(self._send, limit)

    def _send(self, index: int, fd: int) -> bool:
        try:
            self._channel.sendmsg([bytes([index])], [(
                socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))],
                socket.MSG_DONTWAIT)
        except OSError:  # full (the rest waits for the next look), or gone
            return False
        return True

    def _ran(self) -> int:
        """Nanoseconds the worker's main thread has run on a CPU (0: unknown, which
        never looks busy)."""
        try:
            return int(os.pread(self._schedstat, 128, 0).split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def _drain(self) -> None:
        try:
            os.read(self._wake_r, 64)
        except OSError:
            pass


def start(channel: socket.socket, cfg: Any) -> HandBackThread:
    """In a worker, before it serves: offer the connections it has not started on,
    and start the thread. (The master gives a worker no channel when it watches no
    stalls, ``prefork_stall_threshold = 0``: it would never ask, nor take a hand-back.)"""
    from gevent import monkey

    from . import handback, loop_turn

    claims = Claims(monkey.get_original("_thread", "allocate_lock")(), handback.movable)
    handback.install(claims, keep_alive=keep_alive_moves(cfg))
    thread = HandBackThread(channel, claims, loop_turn.turns, loop_turn.wake_on_next_turn,
                            monkey.get_original)
    thread.start()
    return thread


def keep_alive_moves(cfg: Any) -> bool:
    """May a keep-alive connection move while it waits? Not with the PROXY protocol
    (20.1-26: a bool; 27: ``"off"``/``"v1"``/...; the next worker would look for a
    PROXY line at its start), nor when it does not speak HTTP/1 (27: ``protocol``)."""
    proxy = getattr(cfg, "proxy_protocol", False)
    return (proxy in (False, None) or str(proxy).lower() in ("off", "false", "none", "")) \
        and getattr(cfg, "protocol", None) in (None, "http")
