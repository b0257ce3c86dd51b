"""The master-side policy driven through a small fake arbiter (no processes).

The fake has what :class:`gunicorn_prefork._gunicorn.ArbiterView` reads (``WORKERS``,
``LISTENERS``, ``num_workers``, ``systemd``, ``worker_class``, ``spawn_worker``);
its workers have a heartbeat file the tests move by hand. The slot sockets are real
(127.0.0.1, port 0), so steering attaches real cBPF programs. The end-to-end tests
in ``tests/e2e`` remain the proof of behaviour; these pin the decisions.
"""

from __future__ import annotations

import os
import signal
import socket
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from gunicorn.config import Config

from gunicorn_prefork import Worker
from gunicorn_prefork.fork import child_plan
from gunicorn_prefork.master import coordinator
from gunicorn_prefork.master.coordinator import Master

EXIT_0 = 0
KILLED = signal.SIGKILL  # wait status of a process killed by SIGKILL


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def _add(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self.lines.append(msg % args if args else msg)

    debug = info = warning = error = exception = critical = _add


class Heartbeat:
    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()
        self.at = 100.0

    def last_update(self) -> float:
        return self.at

    def fileno(self) -> int:
        return self.file.fileno()


class FakeWorker:
    def __init__(self, pid: int, age: int) -> None:
        self.pid = pid
        self.age = age
        self.aborted = False
        self.tmp = Heartbeat()
        self.sockets: list[Any] = []

    def serve(self) -> None:
        """The worker's first notify from its serving loop."""
        self.tmp.at += 1


class FakeArbiter:
    worker_class = Worker

    def __init__(self, workers: int) -> None:
        self.cfg = Config()
        self.cfg.set("workers", workers)
        self.cfg.set("bind", ["127.0.0.1:0"])
        self.log = Log()
        self.WORKERS: dict[int, FakeWorker] = {}
        self.LISTENERS: list[Any] = []
        self.num_workers = workers
        self.systemd = False
        self._age = 0
        self._pid = 1000
        self.plans: list[child_plan.ChildPlan | None] = []

    def _fork(self) -> int:
        """What Gunicorn's spawn_worker does, without the fork."""
        self._age += 1
        self._pid += 1
        worker = FakeWorker(self._pid, self._age)
        worker.sockets = list(self.LISTENERS)
        self.plans.append(child_plan.armed())
        self.WORKERS[self._pid] = worker
        return self._pid

    def spawn_worker(self) -> int:  # as wrapped by arbiter_hook
        return plugin(self).spawn(self._fork)

    def reap(self, pid: int, status: int = EXIT_0) -> None:
        plugin(self).on_reaped(pid, status)
        self.WORKERS.pop(pid)


_masters: dict[int, Master] = {}


def plugin(arbiter: FakeArbiter) -> Master:
    return _masters[id(arbiter)]


@pytest.fixture
def arbiter() -> Iterator[FakeArbiter]:
    fake = FakeArbiter(3)
    prefork = Master(fake)
    _masters[id(fake)] = prefork
    fake.LISTENERS = prefork.create_listeners(fake.cfg, None)
    yield fake
    prefork.steering.watch(running=False)
    assert prefork.table is not None
    prefork.table.close()
    del _masters[id(fake)]


def slot_of(arbiter: FakeArbiter, pid: int) -> int:
    return plugin(arbiter).states.slot_of[pid].number


def boot_all(arbiter: FakeArbiter) -> list[int]:
    pids = [arbiter.spawn_worker() for _ in range(arbiter.num_workers)]
    for pid in pids:
        arbiter.WORKERS[pid].serve()
    plugin(arbiter).check_ready()
    return pids


def test_each_first_worker_gets_its_own_slot_and_only_its_sockets(arbiter: FakeArbiter) -> None:
    pids = boot_all(arbiter)
    assert sorted(slot_of(arbiter, pid) for pid in pids) == [0, 1, 2]
    table = plugin(arbiter).table
    assert table is not None
    for pid in pids:
        assert arbiter.WORKERS[pid].sockets == plugin(arbiter).states.slot_of[pid].sockets
    # the child is told to close exactly the other slots' sockets, with no boot delay,
    # and every rescue and hand-back channel's end but its own slot's worker ends
    plan = arbiter.plans[0]
    assert plan is not None and plan.boot_delay == 0
    own = slot_of(arbiter, pids[0])
    others = [listener for slot in table.slots if slot.number != own
              for listener in slot.sockets]
    listeners = [c for c in plan.close if not isinstance(c, socket.socket)]
    assert listeners == others
    ends = [c for c in plan.close if isinstance(c, socket.socket)]
    assert plan.rescue is not None and plan.rescue not in ends
    assert plan.handback is not None and plan.handback not in ends and len(ends) == 2
    assert child_plan._armed is None and child_plan.received() is None  # not a child
    assert arbiter.LISTENERS == table.listeners()  # restored after the spawn
    assert "all 3 workers are serving" in arbiter.log.lines[-1]


def test_a_replacement_lands_on_the_slot_its_predecessor_left(arbiter: FakeArbiter) -> None:
    pids = boot_all(arbiter)
    arbiter.reap(pids[1], KILLED)
    new = arbiter.spawn_worker()
    assert slot_of(arbiter, new) == 1


def test_hup_gives_each_slot_one_new_worker(arbiter: FakeArbiter) -> None:
    old = boot_all(arbiter)
    new = [arbiter.spawn_worker() for _ in range(3)]
    assert sorted(slot_of(arbiter, pid) for pid in new) == [0, 1, 2]
    for pid in old:
        plugin(arbiter).note_kill(pid, signal.SIGTERM)
    for pid in old:
        arbiter.reap(pid)
    assert not plugin(arbiter).recovery.crashes.crashes  # asked to leave: not crashes


def test_ttin_adds_a_slot(arbiter: FakeArbiter) -> None:
    boot_all(arbiter)
    arbiter.num_workers = 4
    pid = arbiter.spawn_worker()
    table = plugin(arbiter).table
    assert table is not None and len(table.slots) == 4
    assert slot_of(arbiter, pid) == 3
    assert arbiter.LISTENERS == table.listeners()  # Gunicorn passes all of them on USR2


def test_ttou_drains_the_oldest_workers_slot_then_retires_it(
        arbiter: FakeArbiter, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coordinator.time, "sleep", lambda seconds: None)
    pids = boot_all(arbiter)
    arbiter.num_workers = 2
    prefork = plugin(arbiter)
    prefork.drain_surplus()
    oldest_slot = prefork.states.slot_of[pids[0]]
    assert prefork.states.draining == {oldest_slot}
    assert prefork.steering.program.current == (1, 2)  # new connections avoid the draining slot
    prefork.note_kill(pids[0], signal.SIGTERM)  # what Gunicorn does next
    arbiter.reap(pids[0])
    prefork.settle_drained()
    table = prefork.table
    assert table is not None and len(table.slots) == 2 and oldest_slot not in table.slots
    assert prefork.steering.program.current == ()  # plain hashing over the two left
    assert any("retired slot 0" in line for line in arbiter.log.lines)


def test_a_vacated_slot_gets_connections_once_its_new_worker_serves(
        arbiter: FakeArbiter) -> None:
    pids = boot_all(arbiter)
    prefork = plugin(arbiter)
    arbiter.reap(pids[0], KILLED)
    prefork.steer()
    assert prefork.steering.program.current == (1, 2)
    new = arbiter.spawn_worker()
    prefork.steer()
    assert prefork.steering.program.current == (1, 2)  # booting
    arbiter.WORKERS[new].serve()
    prefork.steer()
    assert prefork.steering.program.current == ()


def test_a_worker_leaving_on_its_own_hands_its_slot_over(arbiter: FakeArbiter) -> None:
    pids = boot_all(arbiter)
    prefork = plugin(arbiter)
    leaving = arbiter.WORKERS[pids[2]]
    os.ftruncate(leaving.tmp.fileno(), 1)  # handoff.announce, as the worker does
    prefork.start_handovers()
    successor = max(arbiter.WORKERS)
    assert len(arbiter.WORKERS) == 4 and slot_of(arbiter, successor) == 2
    assert leaving.age < min(w.age for pid, w in arbiter.WORKERS.items() if pid != pids[2])
    prefork.steer()
    assert prefork.steering.program.current == (0, 1)
    # Gunicorn's SIGTERM for the leaving worker (one too many) is not sent: it
    # leaves on its own, before and after its successor serves
    assert prefork.swallows_kill(pids[2], signal.SIGTERM)
    assert not prefork.swallows_kill(pids[1], signal.SIGTERM)
    assert not prefork.swallows_kill(pids[2], signal.SIGQUIT)  # a quick stop goes out
    arbiter.WORKERS[successor].serve()
    assert prefork.swallows_kill(pids[2], signal.SIGTERM)
    prefork.start_handovers()
    assert len(arbiter.WORKERS) == 4  # one successor only


def test_a_successor_at_its_limit_waits_for_its_predecessor(arbiter: FakeArbiter) -> None:
    """Never three processes on a slot: the successor's own successor is forked
    once the first leaving worker is gone."""
    pids = boot_all(arbiter)
    prefork = plugin(arbiter)
    os.ftruncate(arbiter.WORKERS[pids[2]].tmp.fileno(), 1)
    prefork.start_handovers()
    successor = max(arbiter.WORKERS)
    arbiter.WORKERS[successor].serve()
    os.ftruncate(arbiter.WORKERS[successor].tmp.fileno(), 1)  # its limit, early
    prefork.start_handovers()
    assert len(arbiter.WORKERS) == 4  # no third process on slot 2
    assert prefork.states.waits_for_predecessor(successor)
    assert prefork.swallows_kill(successor, signal.SIGTERM)
    arbiter.reap(pids[2])
    prefork.start_handovers()
    third = max(arbiter.WORKERS)
    assert third != successor and slot_of(arbiter, third) == 2
    assert prefork.states.successor_of(successor) == third


def test_crashes_past_the_threshold_halt_from_the_main_loop_once(
        arbiter: FakeArbiter) -> None:
    prefork = plugin(arbiter)
    assert prefork.recovery.crashes.threshold == 6  # the default: max(5, 2 * 3)
    prefork.recovery.configure(1, 60)
    pids = boot_all(arbiter)
    arbiter.reap(pids[0], KILLED)
    prefork.halt_if_over_threshold()  # one crash: tolerated
    arbiter.reap(pids[1], KILLED)
    with pytest.raises(BaseException) as halted:
        prefork.halt_if_over_threshold()
    assert halted.value.exit_status == 5  # type: ignore[attr-defined]
    prefork.halt_if_over_threshold()  # not again


def test_a_crashed_slots_replacement_gets_the_back_off_as_boot_delay(
        arbiter: FakeArbiter) -> None:
    prefork = plugin(arbiter)
    prefork.settings = type(prefork.settings)(recover_threshold=0, recover_interval=30)
    pids = boot_all(arbiter)
    arbiter.reap(pids[0], KILLED)
    new = arbiter.spawn_worker()
    plan = arbiter.plans[-1]
    assert plan is not None and 29 < plan.boot_delay <= 30
    assert slot_of(arbiter, new) == 0
    arbiter.WORKERS[new].serve()  # notifies while waiting: not booted yet
    prefork.steer()
    assert prefork.steering.program.current == (1, 2)
    assert any("replaces crashed worker" in line for line in arbiter.log.lines)


def test_a_long_stall_is_counted_once_in_statsd(arbiter: FakeArbiter) -> None:
    """A stall over 1 s gave a "started" and an "ended" event: statsd counted it twice
    while the exit summary counted it once."""
    from gunicorn_prefork.master.stall_watch import StallEvent

    counted: list[tuple[str, int]] = []
    arbiter.log.increment = lambda name, value: counted.append((name, value))  # type: ignore[attr-defined]
    control = plugin(arbiter).steering
    control.stalls.events.extend([StallEvent("started", 0, 3, 1.0),
                                  StallEvent("ended", 0, 3, 1.2),
                                  StallEvent("short", 1, 1, 0.05)])
    control.report(None)
    assert counted == [("gunicorn.prefork.stalls", 1), ("gunicorn.prefork.stalls", 1)]
