"""The worker side of ``gunicorn_prefork.Worker``: Gunicorn's gevent worker on its slot.

By the time a worker runs, the master has given it one slot's sockets and the other
slots' descriptors are closed (see :mod:`gunicorn_prefork.master.coordinator`), so the gevent
worker serves only its own listeners and everything else of Gunicorn (access log,
limits, TLS, ``worker_connections``, ``graceful_timeout``) behaves as users know it.

Stopping (invariants kept on every path: TERM, HUP and TTOU from the master, TERM
or QUIT sent to the worker, ``max_requests``):

* the worker keeps notifying the master (Gunicorn's heartbeat) while it waits for
  anything, so ``timeout`` never kills a worker that drains; requests in flight
  get ``graceful_timeout``, as with Gunicorn's gevent worker;
* when it stops accepting it first accepts what is queued on its slot, so only the
  master's copy of the socket is left to hold new connections for the next worker;
* it tells the master it is leaving the moment ``alive`` turns false (see
  :mod:`gunicorn_prefork.fork.leaving`), so a replacement is forked at once;
* on ``max_requests`` (plus its jitter) it takes no new connection from that moment
  (not a second later, when Gunicorn's run loop looks at ``alive``), leaves what is
  queued on its slot to the master (which moves it to the other workers) and to its
  successor, answers what it holds (a kept connection ends after its current or
  next response, with ``Connection: close``) and exits 0 on its own: it waits for
  no signal. So a worker answers at most ``max_requests`` + the connections it
  held at the limit.

While serving, it bumps its slot's progress counter for every connection it takes on,
as it accepts it and as its handler starts (the master's stall watch,
:mod:`gunicorn_prefork.master.stall_watch`), and it dies with its master
(:mod:`gunicorn_prefork.fork.parent_death`). Gunicorn's ``keepalive`` wait for a request never
cuts one that has arrived (:mod:`gunicorn_prefork.worker.request_wait`).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import gevent

from .. import _gunicorn
from ..fork import child_plan, early_signals, leaving, parent_death
from . import (
    coalesce,
    date_cache,
    environ_lookup,
    handback,
    handback_thread,
    lingering_close,
    logger_lookup,
    loop_turn,
    peer_trust,
    request_wait,
    settings_values,
    shedding,
    slot_server,
)
from .rescue_inbox import Inbox
from .slot_server import SlotServer, listener_names

#: A replacement waiting out its back-off stops notifying this long before it boots.
QUIET_BEFORE_BOOT = 1.5

#: Longest a quick shutdown (QUIT/INT) waits for requests already accepted.
QUIT_GRACE_SECONDS = 1.0

#: Steps in which a stopping worker looks whether it may go on.
WAIT_STEP = 0.01

#: Heartbeat interval while a worker waits (Gunicorn's own loop notifies every 1 s).
NOTIFY_EVERY = 0.5


def _leave(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


class _NamedListener:
    """A listener whose address was taken while it was open (see SlotServer)."""

    __slots__ = ("_listener", "_name")

    def __init__(self, listener: Any, name: Any) -> None:
        self._listener = listener
        self._name = name

    def getsockname(self) -> Any:
        return self._name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._listener, name)


class SlotWorker(_gunicorn.GeventWorker):  # type: ignore[misc]
    """Gunicorn's gevent worker serving only its own slot's sockets.

    Users select :class:`gunicorn_prefork.Worker` (:mod:`gunicorn_prefork.worker_class`),
    which adds the master side's installation to this class.
    """

    _alive = True
    _told_master_serving = False
    #: ``max_requests`` reached: no new connection, exit once what it holds is answered
    _handing_over = False
    #: the master (or anyone) sent TERM/QUIT/INT: stop accepting when the loop sees it
    _told_to_stop = False

    # -- liveness ------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """Gunicorn's flag; turning it false (max_requests, TERM, QUIT) announces
        to the master that this worker leaves."""
        return self._alive

    @alive.setter
    def alive(self, value: bool) -> None:
        going = self._alive and not value
        self._alive = value
        if going and _gunicorn.booted(self):
            self._handing_over = not self._told_to_stop and self.nr >= self.max_requests
            if self._handing_over:
                self._stop_accepting(take_queued=False)
                gevent.spawn(self._exit_when_done)
            leaving.announce(_gunicorn.heartbeat_fd(self), self.ppid)

    def init_signals(self) -> None:
        """Gunicorn's handlers, then the stop signals that came before them."""
        super().init_signals()
        early_signals.deliver()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._told_to_stop = True
        super().handle_exit(sig, frame)

    def notify(self) -> None:
        """Gunicorn's heartbeat; the first one, from the serving loop, also wakes the
        master so a replacement gets connections as soon as it serves."""
        super().notify()
        if not self._told_master_serving:
            self._told_master_serving = True
            leaving.wake_master(self.ppid)

    def _wait_while(self, condition: Callable[[], bool], limit: float) -> None:
        """While ``condition()`` holds, at most ``limit`` s, notifying the master."""
        deadline = time.monotonic() + limit
        notified = time.monotonic()
        while condition() and (now := time.monotonic()) < deadline:
            if now - notified >= NOTIFY_EVERY:
                self.notify()
                notified = now
            gevent.sleep(WAIT_STEP)

    # -- serving -------------------------------------------------------------------

    def run(self) -> None:
        _gunicorn.use_stream_server(SlotServer)
        SlotServer.on_close = self._stop_serving
        SlotServer.on_take = self._took_one
        SlotServer.on_release = self._released_one
        SlotServer.log_debug = self.log.debug
        plan = child_plan.received()
        if plan is not None:  # again: --user/--group cleared it
            parent_death.die_with(plan.master_pid)
        if plan is not None and plan.progress is not None and plan.progress_index is not None:
            self._progress = plan.progress
            self._progress_index = plan.progress_index
            # the page still shows what a crashed predecessor held: the master
            # steering by it would send this worker nothing
            self._publish_held(0)
            shedding.install(plan.progress, plan.progress_index)
            lingering_close.install()
        if plan is not None and plan.rescue is not None:
            # runs from the loop's first turn, when the servers exist
            self._inbox = Inbox(os.dup(plan.rescue.fileno()), slot_server.servers,
                                self._answer_probe)
            self._inbox.start()
        loop_turn.install()
        if plan is not None and plan.handback is not None:
            handback_thread.start(plan.handback, self.cfg)
        super().run()

    _progress: Any = None
    _progress_index = 0
    _inbox: Inbox | None = None
    #: connections whose handler runs now (published for the master's steering)
    _held = 0

    def _took_one(self) -> None:
        """A connection taken on: the master's stall watch sees us move, its
        steering sees one more held, its exit summary one more taken."""
        if self._progress is not None:
            self._progress.took(self._progress_index)
        self._publish_held(+1)

    def _released_one(self) -> None:
        """A connection taken on is done with (closed)."""
        self._publish_held(-1)

    def _publish_held(self, change: int) -> None:
        """Write what this worker holds into its slot's word of the page; not once it
        hands the slot over (``max_requests``): its successor writes the slot's load
        then, and what the leaving worker still holds is not the successor's pool."""
        self._held += change
        if self._progress is not None and not self._handing_over:
            self._progress.set_held(self._progress_index, self._held)

    def _answer_probe(self) -> None:
        """The master saw this slot stalled: show that the loop runs (unless the
        pool is full, which keeps it a stall)."""
        if self._progress is not None and slot_server.taking_connections():
            self._progress.bump(self._progress_index)

    def _stop_accepting(self, take_queued: bool = True) -> None:
        """No more connections: neither from the master nor from the slot's sockets
        (``take_queued``: after accepting what is queued on them)."""
        if self._inbox is not None:
            self._inbox.stop()
        handback.stop()
        slot_server.close_all(take_queued)

    def _stop_serving(self) -> None:
        """Gunicorn's run loop saw ``alive`` turn false and closes the servers."""
        self._stop_accepting()
        self._wait_while(slot_server.busy, float(self.cfg.graceful_timeout))

    def _exit_when_done(self) -> None:
        """``max_requests``: exit 0 once the connections in hand are answered (within
        ``graceful_timeout``), without waiting for Gunicorn's run loop to look (it
        sleeps up to a second between looks)."""
        self._wait_while(slot_server.busy, float(self.cfg.graceful_timeout))
        sys.exit(0)

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        if not handback.starts(client):  # handed back before its handler began
            return
        if self._progress is not None:  # its handler starts: progress (after TLS)
            self._progress.bump(self._progress_index)
        request_wait.serving(client)
        name = listener_names.get(id(listener))
        if name is not None:
            listener = _NamedListener(listener, name)
        super().handle(listener, client, addr)

    def timeout_ctx(self) -> Any:
        """Gunicorn's wait (``keepalive``) for a connection's next request, which does
        not cut a request that has arrived (:mod:`.request_wait`)."""
        return request_wait.wait_for_request(self.cfg.keepalive)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> None:
        """Gunicorn's request handling, then a yield to the hub once the loop's turn
        has run :data:`.loop_turn.TURN_BUDGET`.

        The worker yields until its loop's next turn (:func:`.loop_turn.yield_to_loop`):
        Gunicorn serves the next request of a keep-alive connection at once when it is
        already buffered, so a few busy connections would starve the rest (and new ones
        waiting to be accepted): a fast median with a tail of seconds.

        (A yield every 4th request as well cost req/s for little p99: not done.
        Counting each answered request as stall-watch progress cost req/s: not done.
        The figures, with their dates and commands: benchmarks/README.md, "Figures
        behind design choices in the code".)
        """
        # a response that ends its connection raises StopIteration (Gunicorn 20.1 to
        # 27; the gevent worker's handle_request returns None either way): no yield,
        # the connection closes at once
        super().handle_request(listener_name, req, sock, addr)
        handback.request_done(sock, req)
        if loop_turn.over_budget():
            # the connection waits for its next request from here (it may be handed
            # back meanwhile: its next read then ends it, see .handback)
            handback.waits(sock)
            loop_turn.yield_to_loop()

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        """Quick shutdown (QUIT, INT; the old master after USR2).

        Gunicorn's gevent worker keeps accepting and exits 0.1 s later, cutting off
        what it accepted meanwhile (on a busy machine, even short requests). Here the
        worker tells the master at once (which steers new connections to the other
        slots and forks a replacement), accepts for :data:`leaving.HANDOFF_SECONDS`
        more (what was on its way), accepts what is queued, and exits as soon as the
        requests it accepted are answered, at most :data:`QUIT_GRACE_SECONDS` later.
        """
        self._told_to_stop = True
        self.alive = False
        gevent.spawn(self._quick_exit)

    def _quick_exit(self) -> None:
        self.cfg.worker_int(self)
        gevent.sleep(leaving.HANDOFF_SECONDS)
        self._stop_accepting()
        self._wait_while(slot_server.busy, QUIT_GRACE_SECONDS)
        sys.exit(0)

    # -- booting -------------------------------------------------------------------

    def init_process(self) -> None:
        settings_values.install(self.cfg)
        peer_trust.install()
        logger_lookup.install()
        environ_lookup.install()
        date_cache.install()
        coalesce.install()
        self._wait_recover_interval()
        super().init_process()

    def _wait_recover_interval(self) -> None:
        """A crashed worker's replacement waits ``prefork_recover_interval`` here.

        The master is never blocked: it forked us at once. While waiting we keep
        notifying (so the master's timeout does not kill us) and leave at once on
        the signals with which the master stops workers.
        """
        plan = child_plan.received()
        if plan is None or plan.boot_delay <= 0:
            return
        delay = plan.boot_delay
        for sig in early_signals.STOP_SIGNALS:
            signal.signal(sig, _leave)
        early_signals.deliver()  # told to stop already: leave now
        plan.log.info("worker %s waits %.1fs before booting (prefork_recover_interval)",
                      self.pid, delay)
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            # Notify, but not in the last stretch: the master takes the first notify
            # after the back-off for "booted and serving".
            if left > QUIET_BEFORE_BOOT:
                super().notify()  # the heartbeat only: no wake-up of the master
            time.sleep(min(left, 0.5))
