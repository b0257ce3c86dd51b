"""What the status endpoint answers, as pure functions of one snapshot of the master.

:class:`ServerView` is everything the endpoint says, taken at once by
:mod:`.status_source`; this module decides from it alone:

* :func:`readiness` (``GET /ready``): ready while at least one slot has a booted,
  serving worker that is neither stalled, stopped (SIGSTOP), draining nor out of
  room; never while the master stops or halts;
* :func:`liveness` (``GET /live``): Gunicorn's loop turned recently (or the master
  is stopping, which it does outside that loop);
* :func:`agent_reply` (HAProxy's agent-check): ``up N%`` with ``N`` the free room in
  workers (100 per idle worker, at least :data:`AGENT_FLOOR`), ``drain`` while
  stopping, ``down #reason``.

Invariants: no I/O, no clock (``loop_age`` is given), the same view always gives the
same answers; every reason is one line without secrets (numbers and states only).
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The least ``up`` percentage: HAProxy rounds the weight down, and a ready server
#: must keep a weight of at least 1 (with a configured ``weight`` of 10 or more).
AGENT_FLOOR = 10

#: Gunicorn's loop turns at least once a second; a loop that has not turned for this
#: long is not alive (a hook or a call blocked the master).
LIVE_LIMIT = 10.0


@dataclass(frozen=True)
class SlotView:
    """One slot as the master sees it now."""

    number: int
    #: a worker of the slot has booted (its heartbeat moved)
    booted: bool = False
    #: the master lets it take new connections (a worker serves it)
    serving: bool = False
    stalled: bool = False
    draining: bool = False
    #: every worker of the slot is stopped (SIGSTOP, a debugger)
    stopped: bool = False
    queued: int = 0
    held: int = 0
    #: connections its workers took on since the slot got its counters
    accepted: int = 0
    shed: int = 0

    def room(self, places: int | None) -> int | None:
        """Connections it can still take on (``places``: ``worker_connections``);
        None when the worker has no such limit."""
        return None if places is None else max(0, places - self.held - self.queued)

    def takes_connections(self, places: int | None) -> bool:
        room = self.room(places)
        return (self.booted and self.serving and not self.stalled and not self.draining
                and not self.stopped and (room is None or room > 0))


@dataclass(frozen=True)
class ServerView:
    """One snapshot of the master."""

    slots: tuple[SlotView, ...] = ()
    #: the master serves Gunicorn's shared socket (``prefork_reuseport = False``):
    #: no slots; readiness goes by the workers that have booted
    shared_socket: bool = False
    booted_workers: int = 0
    workers: int = 0
    target_workers: int = 0
    #: ``worker_connections`` (None: no such limit)
    places: int | None = None
    stopping: bool = False
    halting: bool = False
    #: seconds since Gunicorn's loop last turned
    loop_age: float = 0.0
    counters: dict[str, int] = field(default_factory=dict)


def ready_slots(view: ServerView) -> list[SlotView]:
    return [slot for slot in view.slots if slot.takes_connections(view.places)]


def readiness(view: ServerView) -> tuple[bool, str]:
    """``(ready, one line)`` for ``GET /ready``."""
    if view.halting:
        return False, "halting: workers crashed too often (prefork_recover_threshold)"
    if view.stopping:
        return False, "stopping"
    if view.shared_socket:
        if view.booted_workers:
            return True, f"{view.booted_workers} of {view.target_workers} workers serving"
        return False, "no worker has booted"
    ready = ready_slots(view)
    if ready:
        return True, (f"{len(ready)} of {len(view.slots)} slots take connections")
    return False, _why_none(view)


def _why_none(view: ServerView) -> str:
    if not view.slots or not any(slot.booted for slot in view.slots):
        return "no worker has booted"
    reasons = []
    for slot in view.slots:
        if not slot.booted or not slot.serving:
            reasons.append(f"slot {slot.number} has no serving worker")
        elif slot.stopped:
            reasons.append(f"slot {slot.number}'s worker is stopped")
        elif slot.stalled:
            reasons.append(f"slot {slot.number}'s worker takes no connections "
                           f"({slot.queued} queued)")
        elif slot.draining:
            reasons.append(f"slot {slot.number} drains")
        else:
            reasons.append(f"slot {slot.number}'s worker is full "
                           f"({slot.held} of {view.places})")
    return "no worker takes connections: " + "; ".join(reasons)


def liveness(view: ServerView) -> tuple[bool, str]:
    """``(live, one line)`` for ``GET /live``."""
    if view.stopping or view.halting:
        return True, "stopping"
    if view.loop_age > LIVE_LIMIT:
        return False, (f"Gunicorn's loop has not turned for {view.loop_age:.0f}s")
    return True, "Gunicorn's loop turns"


def free_workers(view: ServerView) -> float:
    """The server's free room counted in workers (an idle worker: 1.0)."""
    if view.shared_socket:
        return float(view.booted_workers)
    free = 0.0
    for slot in ready_slots(view):
        room = slot.room(view.places)
        free += 1.0 if room is None or not view.places else room / view.places
    return free


def agent_reply(view: ServerView) -> str:
    """One line for HAProxy's agent-check: ``up N%``, ``drain`` or ``down #reason``.

    HAProxy sets the server's weight to N% of its configured ``weight``: 100% per
    idle worker, so a 3-worker host gets about three times a 1-worker one's share."""
    if view.stopping or view.halting:
        return "drain\n"
    ready, reason = readiness(view)
    if not ready:
        return f"down #{reason}\n"
    percent = max(AGENT_FLOOR, round(100 * free_workers(view)))
    return f"up {percent}%\n"
