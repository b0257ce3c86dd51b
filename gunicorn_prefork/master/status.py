"""The status endpoint (``prefork_status_bind``): what the master tells load balancers
and Prometheus, and its place in the master's life.

:class:`StatusEndpoint` binds at start-up (a bad address or a port in use fails the
start, exit 1), starts its thread once Gunicorn has started, hears of every loop turn
(``/live``), of the stop and of a halt (``/ready`` turns 503 before the application's
listeners close), and closes after the workers are gone. Its thread builds one
:class:`~.status_view.ServerView` per request from the master's state
(:meth:`StatusEndpoint.view`) and answers from it (:mod:`.status_view`,
:mod:`.status_metrics`, :mod:`.status_server`).

Invariants: the thread only *reads* the master's state, and only what is safe to
read while the main loop changes it: the steering's group (an immutable snapshot
replaced whole), the stalled set (a frozenset replaced whole), integers, the shared
page and the master's copies of the listeners (a slot closed meanwhile reads as
empty); it takes no lock of the master's, so nothing it does can delay Gunicorn's
loop or the stall watch.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from ..config.status_bind import StatusAddress
from . import status_metrics
from .status_server import StatusServer, open_listener
from .status_view import ServerView, SlotView, agent_reply, liveness, readiness
from .worker_cpu import task_state

if TYPE_CHECKING:
    from .coordinator import Master

_PATHS = "GET /metrics, /ready or /live"


def _stopped(pid: int) -> bool:
    """Is ``pid`` stopped (``T``: SIGSTOP; ``t``: a debugger)?"""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return task_state(stat.read()) in (b"T", b"t")
    except (OSError, ValueError):
        return False


class StatusEndpoint:
    """One master's status endpoint."""

    def __init__(self, master: Master, address: StatusAddress) -> None:
        self._master = master
        self.address = address
        # a master started by USR2 shares the old one's address: Gunicorn's re-exec
        # puts the old master's pid in GUNICORN_PID (its Arbiter reads it in start())
        successor = bool(os.environ.get("GUNICORN_PID")) or master.server.shares_slots()
        sock = open_listener(address, successor=successor)
        host, port = sock.getsockname()[:2]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        self.server = StatusServer(sock, self.respond, self.agent, listening=not successor)
        self.turned_at = time.monotonic()
        self.stopping = False
        self.halting = False
        #: last counters of each slot (a slot whose worker reboots keeps its numbers)
        self._last: dict[int, tuple[int, int]] = {}

    # -- the master's side -----------------------------------------------------------

    def start(self, log: Any) -> None:
        self.server.start()
        log.info("prefork status at %s (%s; HAProxy agent-check)", self.url, _PATHS)

    def loop_turned(self) -> None:
        self.turned_at = time.monotonic()
        if not self.server.listening and self._master.ready:
            self.server.listen()  # a USR2 successor whose workers now serve
            self._master.log.info("status endpoint at %s: answering beside the old "
                                  "master, now that this one's workers serve", self.url)

    def begin_stop(self, shared: bool) -> None:
        """The master begins to stop: 503 from now on; when another master shares the
        address (USR2), it stops listening instead and leaves the answers to that one
        (the host still serves)."""
        if shared:
            self.server.stop_listening()
        else:
            self.stopping = True

    def begin_halt(self) -> None:
        self.halting = True

    def close(self) -> None:
        self.server.close()

    # -- the thread's side -----------------------------------------------------------

    def respond(self, method: str, path: str) -> tuple[str, str, str]:
        if path not in ("/metrics", "/ready", "/live"):
            return "404 Not Found", "text/plain", f"not found: {_PATHS}\n"
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", f"only {_PATHS}\n"
        view = self.view()
        if path == "/metrics":
            return ("200 OK", "text/plain; version=0.0.4; charset=utf-8",
                    status_metrics.render(view))
        ok, reason = readiness(view) if path == "/ready" else liveness(view)
        if ok:
            return "200 OK", "text/plain", f"{path[1:]}: {reason}\n"
        return "503 Service Unavailable", "text/plain", f"not {path[1:]}: {reason}\n"

    def agent(self) -> str:
        return agent_reply(self.view())

    def view(self) -> ServerView:
        """One snapshot of the master (from the status thread)."""
        master = self._master
        server = master.server
        steering = master.steering
        places = getattr(server.cfg, "worker_connections", None)
        workers = server.workers()
        counters = {"stalls": steering.stalls.total, "moved": steering.rescue.moved,
                    "handed_back": steering.rescue.handed_back,
                    "shed": steering.rebalancing.shed,
                    "crashes": master.counts.get("gunicorn.prefork.crashes"),
                    "recycles": master.counts.get("gunicorn.prefork.recycles")}
        common: dict[str, Any] = {
            "workers": len(workers), "target_workers": server.num_workers,
            "places": places if isinstance(places, int) and places > 0 else None,
            "stopping": self.stopping, "halting": self.halting,
            "loop_age": time.monotonic() - self.turned_at, "counters": counters}
        if not master.reuseport:
            return ServerView(shared_socket=True, booted_workers=len(workers), **common)
        return ServerView(slots=self._slots(), **common)

    def _slots(self) -> tuple[SlotView, ...]:
        steering = self._master.steering
        group = steering.group
        if group is None:
            return ()
        stalled = steering.stalls.stalled
        page = steering.progress
        slots = []
        for index, watched in enumerate(group.watched):
            try:
                queued = watched.slot.queued()
            except (OSError, ValueError, AttributeError):
                queued = 0
            booted = watched.progress is not None
            if booted:
                held = page.held(watched.progress)
                self._last[watched.number] = (page.taken(watched.progress),
                                              page.shed(watched.progress))
            else:
                held = 0
            accepted, shed = self._last.get(watched.number, (0, 0))
            slots.append(SlotView(
                number=watched.number, booted=booted, serving=index in group.serving,
                stalled=index in stalled, draining=index in group.draining,
                stopped=bool(watched.pids) and all(_stopped(pid) for pid in watched.pids),
                queued=queued, held=held, accepted=accepted, shed=shed))
        return tuple(slots)
