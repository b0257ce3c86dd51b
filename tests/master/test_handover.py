"""A worker leaving on its own gets its successor at once
(:mod:`gunicorn_prefork.master.handover`), driven with :class:`SlotStates` and a fake
server whose workers have real heartbeat files: :func:`handover.swallows_kill` only
for Gunicorn's SIGTERM of a worker handing over; :func:`handover.start` forks one
successor per leaving worker that is first in line on its slot, none for one that
waits for its predecessor (:meth:`SlotStates.waits_for_predecessor`) until that one
is gone, none for a worker the master asked to leave, and makes the leaving worker
Gunicorn's oldest. The same decisions through the coordinator:
``tests/master/test_coordinator.py``.
"""

from __future__ import annotations

import os
import signal

import pytest

from gunicorn_prefork.fork import leaving
from gunicorn_prefork.master import handover
from gunicorn_prefork.master.slot_states import SlotStates
from tests.listening import Slot
from tests.master.test_coordinator import FakeWorker, Log


class Server:
    """What :func:`handover.start` reads of Gunicorn's arbiter; ``spawn_worker`` assigns
    the new worker a slot as the coordinator does (:meth:`SlotStates.choose`)."""

    def __init__(self, states: SlotStates, slots: list[Slot]) -> None:
        self.states = states
        self.slots = slots
        self.num_workers = len(slots)
        self.live: dict[int, FakeWorker] = {}
        self.spawned: list[int] = []
        self.can_fork = True
        self._pid = 100

    def workers(self) -> dict[int, FakeWorker]:
        return dict(self.live)

    def spawn_worker(self) -> int | None:
        if not self.can_fork:
            return None
        self._pid += 1
        self.live[self._pid] = FakeWorker(self._pid, age=self._pid)
        self.states.assigned(self._pid, self.states.choose(self.slots))
        self.spawned.append(self._pid)
        return self._pid

    def announce(self, pid: int) -> None:
        """What the worker does when it leaves on its own (``leaving.announce``, but
        without waking a master: there is none)."""
        os.ftruncate(self.live[pid].tmp.fileno(), 1)
        assert leaving.announced(self.live[pid].tmp.fileno())

    def exit(self, pid: int) -> None:
        del self.live[pid]


@pytest.fixture
def states() -> SlotStates:
    return SlotStates()


@pytest.fixture
def server(states: SlotStates) -> Server:
    """Two slots, one worker on each (pids 101 and 102)."""
    made = Server(states, [Slot(number=0), Slot(number=1)])
    for _ in made.slots:
        made.spawn_worker()
    made.spawned.clear()
    return made


def test_only_gunicorns_sigterm_for_a_worker_handing_over_is_swallowed(
        states: SlotStates) -> None:
    slot = Slot(number=0)
    states.assigned(1, slot)
    states.assigned(2, slot)
    assert states.hands_over(1) is slot
    assert handover.swallows_kill(states, 1, signal.SIGTERM)
    assert not handover.swallows_kill(states, 1, signal.SIGQUIT)  # a quick stop goes out
    assert not handover.swallows_kill(states, 1, signal.SIGKILL)
    assert not handover.swallows_kill(states, 2, signal.SIGTERM)  # it stays: sent
    assert not handover.swallows_kill(states, 3, signal.SIGTERM)  # unknown: sent


def test_a_leaving_worker_gets_one_successor_on_its_slot_and_is_made_oldest(
        server: Server, states: SlotStates) -> None:
    log = Log()
    handover.start(server, states, log)  # nobody announced: nothing forked
    assert server.spawned == []
    server.announce(102)
    handover.start(server, states, log)
    assert len(server.spawned) == 1
    successor = server.spawned[0]
    assert states.slot_of[successor] is states.slot_of[102]
    assert states.successor_of(102) == successor
    assert server.live[102].age < min(w.age for pid, w in server.live.items() if pid != 102)
    assert any("leaves on its own: slot 1" in line for line in log.lines)
    handover.start(server, states, log)  # the next turn of Gunicorn's loop
    handover.start(server, states, log)
    assert server.spawned == [successor]  # one successor only


def test_two_leaving_at_once_get_one_successor_each(
        server: Server, states: SlotStates) -> None:
    server.announce(101)
    server.announce(102)
    handover.start(server, states, Log())
    assert len(server.spawned) == 2
    assert {states.slot_of[pid] for pid in server.spawned} == set(server.slots)


def test_a_successor_at_its_own_limit_waits_for_its_predecessor(
        server: Server, states: SlotStates) -> None:
    """Never three processes on a slot: the next in line gets its successor only once
    the first leaving worker has exited."""
    log = Log()
    server.announce(102)
    handover.start(server, states, log)
    successor = server.spawned[0]
    server.announce(successor)  # its own max_requests, early
    handover.start(server, states, log)
    assert server.spawned == [successor]  # no third process on slot 1
    assert states.waits_for_predecessor(successor)
    assert any("its predecessor on slot 1" in line for line in log.lines)
    server.exit(102)
    handover.start(server, states, log)
    assert len(server.spawned) == 2
    third = server.spawned[1]
    assert states.slot_of[third] is server.slots[1]
    assert states.successor_of(successor) == third


def test_a_worker_the_master_asked_to_leave_gets_no_successor_here(
        server: Server, states: SlotStates) -> None:
    """It is stopped by the master (TERM on TTOU, HUP): Gunicorn replaces it, not the
    handover, even though it announces its leaving as every worker does."""
    states.asked_to_leave(102)
    server.announce(102)
    handover.start(server, states, Log())
    assert server.spawned == []
    assert not handover.swallows_kill(states, 102, signal.SIGTERM)


def test_a_fork_that_fails_ends_the_round(server: Server, states: SlotStates) -> None:
    server.can_fork = False
    server.announce(102)
    handover.start(server, states, Log())  # returns: no endless loop
    assert server.spawned == []
    server.can_fork = True
    handover.start(server, states, Log())  # the next turn forks it
    assert len(server.spawned) == 1
