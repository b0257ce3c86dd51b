"""``gunicorn_prefork.Worker``: Gunicorn's gevent worker on its own SO_REUSEPORT socket.

By the time a worker runs, the master has given it one slot's sockets and the other
slots' descriptors are closed (see :mod:`gunicorn_prefork.master`), so the gevent
worker serves only its own listeners and everything else of Gunicorn (access log,
limits, TLS, ``worker_connections``, ``graceful_timeout``) behaves as users know it.
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType
from typing import Any

import gevent
from gunicorn.workers import ggevent
from gunicorn.workers.ggevent import GeventWorker

from . import arbiter_hook, date_cache, handoff
from .coalesce import CoalescingSocket
from .slot_server import SlotServer, listener_names, servers

#: A replacement waiting out its back-off stops notifying this long before it boots.
QUIET_BEFORE_BOOT = 1.5

#: Requests between two yields to the gevent hub (fairness between connections).
#: Measured on hello world, c64, 2 workers: every request: p99 10-15 ms at 19-20k
#: req/s; every 4th: p99 19-23 ms at 21-22k req/s; never: p99 110-220 ms, 23k.
YIELD_EVERY = 4

#: Longest a quick shutdown (QUIT/INT) waits for requests already accepted.
QUIT_GRACE_SECONDS = 1.0


def _leave(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


def _wait_for_requests(limit: float) -> None:
    """Until this worker's servers have no connection in hand, at most ``limit`` s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and any(server.busy() for server in servers):
        gevent.sleep(0.01)


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


class Worker(GeventWorker):  # type: ignore[misc]
    """Gunicorn's gevent worker serving only its own slot's sockets.

    Select it with ``-k gunicorn_prefork.Worker`` or
    ``worker_class = "gunicorn_prefork.Worker"``.
    """

    #: Marks the worker classes the master-side plugin acts for.
    gunicorn_prefork = True

    @classmethod
    def setup(cls) -> None:
        """Called by Gunicorn in the master each time it loads the worker class."""
        arbiter_hook.install()

    def run(self) -> None:
        # Gunicorn's run() builds its servers from this module-level name.
        ggevent.StreamServer = SlotServer
        SlotServer.close_wait = float(self.cfg.graceful_timeout)
        super().run()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        name = listener_names.get(id(listener))
        if name is not None:
            listener = _NamedListener(listener, name)
        super().handle(listener, client, addr)

    def notify(self) -> None:
        """Gunicorn's heartbeat; the first one, from the serving loop, also wakes the
        master so a replacement gets connections as soon as it serves."""
        super().notify()
        if not self._told_master_serving:
            self._told_master_serving = True
            handoff.wake_master(self.ppid)

    _told_master_serving = False

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        """Gunicorn's request handling, with two changes for speed and fairness.

        The response goes out through a :class:`CoalescingSocket` (headers and a
        small body in one send). Every :data:`YIELD_EVERY` requests the worker
        yields to the gevent hub: Gunicorn serves the next request of a keep-alive
        connection at once when it is already buffered, so a few busy connections
        would starve the rest (and new ones waiting to be accepted) — a p50 of 1 ms
        with a p99 of seconds.
        """
        out = CoalescingSocket(sock)
        try:
            return super().handle_request(listener_name, req, out, addr)
        finally:
            out.flush()
            if not self.alive and self.nr >= self.max_requests:
                self._leave_on_our_own()
            if self.nr % YIELD_EVERY == 0:
                gevent.sleep(0)

    def _leave_on_our_own(self) -> None:
        """``max_requests`` reached: hand the slot over, finish, exit (see handoff)."""
        if self._leaving:
            return
        self._leaving = True
        handoff.announce(self.tmp, self.ppid)
        gevent.spawn(self._finish_and_exit)

    _leaving = False

    def _finish_and_exit(self) -> None:
        gevent.sleep(handoff.HANDOFF_SECONDS)
        for server in servers:
            server.close()
        _wait_for_requests(self.cfg.graceful_timeout)
        sys.exit(0)

    def handle_quit(self, sig: int, frame: FrameType | None) -> None:
        """Quick shutdown (QUIT, INT; the old master after USR2).

        Gunicorn's gevent worker keeps accepting and exits 0.1 s later, cutting off
        what it accepted meanwhile (on a busy machine, even short requests). Here the
        worker stops accepting at once, so its queue stays with the socket for the
        other holders, and exits as soon as the requests it already accepted are
        answered, at most :data:`QUIT_GRACE_SECONDS` later.
        """
        for server in servers:
            if not server.closed:
                server.stop_accepting()
        gevent.spawn(self._quick_exit)

    def _quick_exit(self) -> None:
        self.alive = False
        self.cfg.worker_int(self)
        _wait_for_requests(QUIT_GRACE_SECONDS)
        sys.exit(0)

    def init_process(self) -> None:
        date_cache.install()
        self._wait_recover_interval()
        super().init_process()

    def _wait_recover_interval(self) -> None:
        """A crashed worker's replacement waits ``prefork_recover_interval`` here.

        The master is never blocked: it forked us at once. While waiting we keep
        notifying (so the master's timeout does not kill us) and leave at once on
        the signals with which the master stops workers.
        """
        master = arbiter_hook.current
        if master is None or master.spawn_delay <= 0:
            return
        delay = master.spawn_delay
        for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
            signal.signal(sig, _leave)
        master.log.info("worker %s waits %.1fs before booting (prefork_recover_interval)",
                        self.pid, delay)
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            # Notify, but not in the last stretch: the master takes the first notify
            # after the back-off for "booted and serving".
            if left > QUIET_BEFORE_BOOT:
                self.tmp.notify()
            time.sleep(min(left, 0.5))
