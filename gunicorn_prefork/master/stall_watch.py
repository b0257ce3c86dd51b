"""Which slots hold queued connections that their worker does not take: stalls.

Theory of operation
-------------------
With one shared socket a worker whose event loop is stuck (CPU-bound code, a driver
that does not yield, SIGSTOP, a hang until ``timeout``) simply stops accepting and
the others take every new connection. With a socket per worker the kernel keeps
hashing connections into the stuck worker's queue. So the master watches each slot:

* its accept queue, which the master can read on its own copy of the socket
  (``tcpi_unacked`` of a listening socket, what ``ss -ltn`` shows as Recv-Q);
* its worker's progress, a counter the worker bumps for every connection it takes
  on (:mod:`gunicorn_prefork.fork.progress`).

A slot is *stalled* when its queue has not been empty and its counter has not moved
for ``prefork_stall_threshold`` seconds; it stays stalled until the counter moves
(the master moves its queued connections to live workers, :mod:`.rescue`, so an
empty queue says nothing; a probe through the rescue channel makes a worker whose
loop runs again bump its counter even when nothing is left for it to take). A
worker whose pool is full (``worker_connections``) takes nothing on either and
counts as stalled too. The master steers new connections away from stalled slots
(see :func:`gunicorn_prefork.master.steering_program.allowed_indices`).

The watch runs in a thread of the master's own (:mod:`.watch_thread`), which looks
when a slot's socket has something queued and then every :func:`tick_interval`
while a stall is possible, and never while nothing waits. It runs under a lock the
main loop holds while it changes the slots, so :meth:`StallWatch.tick` reads one
consistent snapshot (an immutable tuple); it never logs, and records what operators
should hear in :attr:`StallWatch.events` for the main loop to log.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..fork.progress import ProgressPage

#: A stall that lasts this long gets a warning (once), and an info line when it ends.
REPORT_AFTER = 1.0


@dataclass(frozen=True)
class WatchedSlot:
    """One slot of the steering group, in the group's index order."""

    number: int
    progress: int | None
    slot: Any  # the Slot: its listeners


@dataclass
class _SlotState:
    count: int = -1
    since: float = 0.0
    stalled_at: float | None = None
    reported: bool = False
    queued: int = 0


@dataclass(frozen=True)
class StallEvent:
    kind: str  # "started" (passed REPORT_AFTER), "ended" (a reported one), "short"
    slot_number: int
    queued: int
    seconds: float


@dataclass
class StallWatch:
    """Per-slot stall state, updated by :meth:`tick`."""

    threshold: float
    page: ProgressPage
    #: indices (in the group's order) of the slots stalled right now
    stalled: frozenset[int] = frozenset()
    #: the last tick saw a queue its worker did not take from, or a stall: look again
    #: after an interval (an empty queue may need no look until something is queued)
    busy: bool = False
    events: list[StallEvent] = field(default_factory=list)
    total: int = 0
    _states: dict[int, _SlotState] = field(default_factory=dict)

    def tick(self, now: float, slots: Sequence[WatchedSlot]) -> bool:
        """Look at every slot once; returns whether the stalled set changed."""
        stalled = set()
        busy = False
        seen = set()
        for index, watched in enumerate(slots):
            if watched.progress is None:
                continue
            seen.add(watched.number)
            state = self._states.get(watched.number)
            if state is None:
                state = self._states[watched.number] = _SlotState(since=now)
            count = self.page.read(watched.progress)
            # the counter first: a worker that moved needs no getsockopt on this tick
            queued = 0 if count != state.count else watched.slot.queued()
            if count != state.count or (queued == 0 and state.stalled_at is None):
                state.count, state.since = count, now
                self._end(watched.number, state, now)
                continue
            busy = True
            if now - state.since < self.threshold:
                continue
            stalled.add(index)
            state.queued = max(state.queued, queued)
            if state.stalled_at is None:
                state.stalled_at = state.since
                self.total += 1
            elif not state.reported and now - state.stalled_at >= REPORT_AFTER:
                state.reported = True
                # the queue it had, not what the rescue left of it
                self.events.append(StallEvent("started", watched.number, state.queued,
                                              now - state.stalled_at))
        for number in [n for n in self._states if n not in seen]:
            del self._states[number]
        changed = frozenset(stalled) != self.stalled
        self.stalled = frozenset(stalled)
        self.busy = busy
        return changed

    def quiet(self, until: float) -> None:
        """Nothing was queued on any slot until ``until`` (the watch slept until a
        connection was queued): no slot that is not stalled waited before that."""
        for state in self._states.values():
            if state.stalled_at is None:
                state.since = max(state.since, until)

    def _end(self, number: int, state: _SlotState, now: float) -> None:
        if state.stalled_at is None:
            return
        kind = "ended" if state.reported else "short"
        self.events.append(StallEvent(kind, number, state.queued, now - state.stalled_at))
        state.stalled_at, state.reported, state.queued = None, False, 0

    def take_events(self) -> list[StallEvent]:
        """From the main loop: what happened since the last call."""
        events, self.events = self.events, []
        return events


def tick_interval(threshold: float) -> float:
    """How often the watch looks while a stall is possible: a fifth of the
    threshold, between 2 and 10 ms."""
    return max(0.002, min(0.01, threshold / 5))
