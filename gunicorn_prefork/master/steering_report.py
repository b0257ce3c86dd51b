"""What the steering saw, told to operators: log lines, statsd, the exit summary.

The numbers come from the parts of :class:`~gunicorn_prefork.master.steering.Steering`
(the stall watch's events and totals, the rescue's moved count, the rebalancing's
shed count, the progress page's per-slot counters); this module only words and
counts them, so a change of wording or of a metric's name is made here alone (the
status endpoint reads the same numbers).

Invariants: it runs in the master's main loop or at its exit, never in the watch
thread; it changes no steering state (it reads under the steering's lock).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import balance_report
from .slot_table import SlotTable

if TYPE_CHECKING:
    from .steering import Steering


class SteeringReport:
    """Log lines and statsd numbers for one :class:`Steering`."""

    def __init__(self, steering: Steering, metric: Callable[[str, int], None]) -> None:
        self._steering = steering
        self._metric = metric
        self._moved_counted = 0

    @property
    def log(self) -> Any:
        return self._steering.log

    def report(self, table: SlotTable | None) -> None:
        """From the main loop: log and count what the stall watch saw since the last
        call; refresh the per-slot gauges."""
        steering = self._steering
        with steering.lock:
            events = steering.stalls.take_events()
            handed, steering.rescue.handed_events = steering.rescue.handed_events, []
            group = steering.group
            others = bool(group is not None and group.takers(steering.stalls.stalled))
            shed = steering.rebalancing.update(group, steering.stalls.stalled)
        if shed:
            self._metric("gunicorn.prefork.shed", shed)
        for event in events:
            worker = self._worker_on(event.slot_number)
            if event.kind == "started":
                where = ("they and new connections go to the other workers" if others
                         else "they wait for it: no other worker takes connections")
                self.log.warning("worker %s on slot %d takes no connections for %.1fs "
                                 "(%d connection(s) queued on it: %s)", worker,
                                 event.slot_number, event.seconds, event.queued, where)
            elif event.kind == "ended":
                self.log.info("worker %s on slot %d takes connections again after a "
                              "%.1fs stall", worker, event.slot_number, event.seconds)
                continue  # counted when it started
            self._metric("gunicorn.prefork.stalls", 1)
        self._handed(handed, others)
        moved = steering.rescue.moved
        if moved > self._moved_counted:
            self._metric("gunicorn.prefork.moved", moved - self._moved_counted)
            self._moved_counted = moved
        self._gauges(table)

    def _handed(self, handed: list[tuple[int, int]], others: bool) -> None:
        """One warning per slot whose worker handed connections back since the last
        report (a stuck loop: its thread answered the master, or saw it itself)."""
        per_slot = Counter[int]()
        for number, count in handed:
            per_slot[number] += count
        for number, count in sorted(per_slot.items()):
            self.log.warning("worker %s on slot %d is stuck (its loop runs no other "
                             "connection): it handed back %d connection(s) it had not "
                             "started on; %s", self._worker_on(number), number, count,
                             "the other workers serve them" if others
                             else "they wait for a worker with room")
        self._metric("gunicorn.prefork.handed_back", sum(per_slot.values()))

    def _gauges(self, table: SlotTable | None) -> None:
        gauge = getattr(self._steering.server.log, "gauge", None)
        if not callable(gauge) or table is None:
            return
        progress = self._steering.progress
        for slot in table.slots:
            gauge(f"gunicorn.prefork.slot.{slot.number}.queued", slot.queued())
            index = progress.index_for(slot)
            if index is not None:
                gauge(f"gunicorn.prefork.slot.{slot.number}.held", progress.held(index))

    def at_exit(self) -> None:
        """When the watch stops (the master exits): what it saw, in a few lines."""
        steering = self._steering
        if steering.rebalancing.shed:
            self.log.info("keep-alive rebalancing: %d connection(s) ended after their "
                          "response on workers holding more than their share",
                          steering.rebalancing.shed)
        stalls, moved = steering.stalls.total, steering.rescue.moved
        if steering.rescue.handed_back:
            self.log.info("hand-back: stuck workers handed back %d connection(s) they "
                          "had not started on; other workers served them",
                          steering.rescue.handed_back)
        if steering.stalls.deferred:
            # beside stalls it explains them; alone it only says the machine was busy
            say = self.log.info if stalls else self.log.debug
            say("stall watch: %d wait(s) past the threshold were a worker waiting for "
                "a CPU (a busy machine), not stalls", steering.stalls.deferred)
        if stalls or moved:
            self.log.info("stall watch: %d stall(s) of slots seen; %d queued "
                          "connection(s) moved to other workers, off stalled slots and "
                          "off slots whose worker had left (prefork_stall_threshold = "
                          "%gs)", stalls, moved, steering.stalls.threshold)
        self._balance()

    def _balance(self) -> None:
        """The connections each slot took, when they were uneven."""
        group = self._steering.group
        if group is None:
            return
        progress = self._steering.progress
        line = balance_report.balance_line({
            watched.number: progress.taken(watched.progress)
            for watched in group.watched if watched.progress is not None})
        if line is not None:
            self.log.info("%s", line)

    def _worker_on(self, number: int) -> str:
        pids = [str(pid) for pid, slot in self._steering.states.staying().items()
                if slot.number == number]
        return ",".join(pids) or "?"
