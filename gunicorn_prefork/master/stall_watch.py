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
for ``prefork_stall_threshold`` seconds, not counting what its worker spent waiting
for a CPU (:mod:`.worker_cpu`): a worker that is runnable but has run less than the
threshold, and less than :data:`CPU_WAIT_SHARE` of the time, since its queue
filled is only behind a saturated machine's other processes, and gets until it has
run that long, or until :func:`cpu_wait_limit` has passed on the wall clock. It
stays stalled until the counter moves
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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..fork.progress import ProgressPage
from .worker_cpu import CpuSample

CpuReader = Callable[[tuple[int, ...]], "CpuSample | None"]

#: A stall that lasts this long gets a warning (once), and an info line when it ends.
REPORT_AFTER = 1.0

#: A runnable worker that had less than this share of a CPU while its queue waited
#: was waiting for one. A worker busy in CPU-bound code gets more (about half on a
#: saturated 2-core machine) and is stalled at the threshold, as without the rule:
#: waiting for it to run a whole threshold raised the stall tool's mixed p99
#: (figures: benchmarks/README.md, "Figures behind design choices in the code").
CPU_WAIT_SHARE = 0.25


@dataclass(frozen=True)
class WatchedSlot:
    """One slot of the steering group, in the group's index order."""

    number: int
    progress: int | None
    slot: Any  # the Slot: its listeners
    #: the slot's workers (for their CPU state); none: the wall clock alone
    pids: tuple[int, ...] = ()


@dataclass
class _SlotState:
    count: int = -1
    since: float = 0.0
    stalled_at: float | None = None
    reported: bool = False
    queued: int = 0
    #: nanoseconds its workers had run at the first look that saw the queue wait
    ran_from: int | None = None
    deferred: bool = False


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
    #: reads the workers' CPU time and state (:class:`.worker_cpu.WorkerCpu`);
    #: None: the wall clock alone decides
    cpu: CpuReader | None = None
    #: waits past the threshold not taken for stalls: the worker was waiting for a CPU
    deferred: int = 0
    _states: dict[int, _SlotState] = field(default_factory=dict)

    def tick(self, now: float, slots: Sequence[WatchedSlot],
             stuck: frozenset[int] = frozenset()) -> bool:
        """Look at every slot once; returns whether the stalled set changed. Slots
        numbered in ``stuck`` stall now: their worker said its loop is stuck (it
        handed back what it holds, :mod:`.rescue`); they stay stalled until their
        counter moves."""
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
            told = watched.number in stuck and state.stalled_at is None
            if told:  # as if its counter had stood still for a threshold (and more:
                # ``now - (now - t)`` may come out a little under ``t``)
                state.count, state.since = count, now - 2 * self.threshold
            # the counter first: a worker that moved needs no getsockopt on this tick
            queued = 0 if count != state.count else watched.slot.queued()
            if count != state.count or (queued == 0 and state.stalled_at is None
                                        and not told):
                state.count, state.since = count, now
                state.ran_from, state.deferred = None, False
                self._end(watched.number, state, now)
                continue
            busy = True
            if state.ran_from is None and state.stalled_at is None:
                state.ran_from = self._ran(watched)
            if now - state.since < self.threshold:
                continue
            if state.stalled_at is None and not told \
                    and self._waits_for_cpu(watched, state, now):
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

    def _ran(self, watched: WatchedSlot) -> int | None:
        sample = self.cpu(watched.pids) if self.cpu is not None and watched.pids else None
        return None if sample is None else sample.ran_ns

    def _waits_for_cpu(self, watched: WatchedSlot, state: _SlotState, now: float) -> bool:
        """Past the threshold: is the worker only behind on a busy machine (runnable,
        run less than the threshold, and less than :data:`CPU_WAIT_SHARE` of the time,
        since its queue filled)?"""
        if self.cpu is None or not watched.pids:
            return False
        if now - state.since >= cpu_wait_limit(self.threshold):
            return False
        sample = self.cpu(watched.pids)
        if sample is None or not sample.runnable:
            return False  # gone, stopped, or blocked in a call: it takes nothing on
        if state.ran_from is None:
            state.ran_from = sample.ran_ns  # first look: from now on
        ran = (sample.ran_ns - state.ran_from) / 1e9
        if ran >= self.threshold or ran >= (now - state.since) * CPU_WAIT_SHARE:
            return False  # it ran (a threshold's worth, or its share) and took nothing
        if not state.deferred:
            state.deferred = True
            self.deferred += 1
        return True

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


def cpu_wait_limit(threshold: float) -> float:
    """How long a queue may wait for a worker that waits for a CPU: ten thresholds,
    at least 0.1 s."""
    return max(0.1, 10 * threshold)


def tick_interval(threshold: float) -> float:
    """How often the watch looks while a stall is possible: a fifth of the
    threshold, between 2 and 10 ms."""
    return max(0.002, min(0.01, threshold / 5))
