"""The steering's own decisions (:mod:`gunicorn_prefork.master.steering`), with a fake
server: what a worker's fork gets of it (:meth:`Steering.for_child`: the slot's
counter in the shared page, its end of the rescue channel, the ends to close; a slot
the page has no room for is named once), when the stall watch's thread runs
(:meth:`Steering.watch`: started, stopped with ``running=False``, paused while
another master shares the slots, a USR2 overlap) and that :meth:`Steering.steer`
notices an overlap by itself. The thread's own timing is
``tests/master/test_watch_thread.py``'s; the coordinator's use of all this is
``tests/master/test_coordinator.py``'s.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from gunicorn_prefork.master.boot_watch import BootWatch
from gunicorn_prefork.master.slot_states import SlotStates
from gunicorn_prefork.master.steering import Steering
from tests.listening import Listener, Slot
from tests.master.test_coordinator import Log

#: The watch thread's name (:class:`gunicorn_prefork.master.watch_thread.WatchThread`).
THREAD_NAME = "gunicorn-prefork-stall-watch"


@dataclass
class Config:
    worker_connections: int = 1000


@dataclass
class Server:
    """What :class:`Steering` reads of Gunicorn's arbiter (``ArbiterView``)."""

    num_workers: int = 2
    cfg: Config = field(default_factory=Config)
    #: a USR2 overlap: another master's workers accept on our slots too
    sharing: bool = False
    new_master: bool = False

    def workers(self) -> dict[int, Any]:
        return {}

    def shares_slots(self) -> bool:
        return self.sharing or self.new_master

    def started_new_master(self) -> bool:
        return self.new_master


@dataclass
class Table:
    """The slot table's shape as :meth:`Steering.steer` reads it."""

    slots: list[Any]


def _watch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == THREAD_NAME]


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def steering(server: Server) -> Iterator[Steering]:
    log = Log()
    made = Steering(server, SlotStates(), BootWatch(), 0.01, log,  # type: ignore[arg-type]
                    lambda name, value: None)
    yield made
    made.stop()  # the thread, and the exit summary said now rather than at exit
    made.rescue.keep_only([], [])  # closes every channel


def test_a_child_gets_its_slots_counter_and_rescue_end_and_closes_every_other_end(
        steering: Steering) -> None:
    first, second = Slot(number=0), Slot(number=1)
    other = steering.for_child(second)
    share = steering.for_child(first)
    assert share.progress is steering.progress
    assert share.progress_index == steering.progress.index_for(first)
    assert share.progress_index is not None
    assert share.progress_index != other.progress_index
    own, others = steering.rescue.channel_for(first), steering.rescue.channel_for(second)
    own_back = steering.rescue.handback_for(first)
    other_back = steering.rescue.handback_for(second)
    assert share.rescue_end is own.worker_end
    assert share.handback_end is own_back.worker_end
    # every master end, and the other slots' worker ends; never its own worker ends
    assert set(share.close) == {own.master_end, others.master_end, others.worker_end,
                                own_back.master_end, other_back.master_end,
                                other_back.worker_end}
    assert own.worker_end not in share.close and own_back.worker_end not in share.close
    # asked again (a replacement for the slot): the same counter and channel
    again = steering.for_child(first)
    assert (again.progress_index, again.rescue_end) == (share.progress_index, own.worker_end)


def test_a_slot_the_page_has_no_room_for_is_named_once_and_gets_no_counter(
        steering: Steering) -> None:
    for _ in range(steering.progress.capacity):  # every place taken
        assert steering.progress.index_for(object()) is not None
    late = Slot(number=7)
    assert steering.for_child(late).progress_index is None
    assert steering.for_child(late).progress_index is None
    warnings = [line for line in steering.log.lines if "no place in the shared page" in line]
    assert len(warnings) == 1 and warnings[0].startswith("slot 7 ")


def test_the_watch_thread_runs_while_asked_and_stops_with_running_false(
        steering: Steering) -> None:
    assert _watch_threads() == []
    steering.watch(running=True)
    assert len(_watch_threads()) == 1
    steering.watch(running=True)  # asked again (a HUP): still one thread
    assert len(_watch_threads()) == 1
    steering.stalls.stalled = frozenset({0})
    steering.watch(running=False)
    assert _watch_threads() == []
    assert steering.stalls.stalled == frozenset()  # nothing steered away for a stall


def test_no_watch_without_a_threshold(steering: Steering) -> None:
    steering.set_stall_threshold(0)
    steering.watch(running=True)
    assert _watch_threads() == []


def test_another_master_on_the_slots_pauses_the_watch_until_it_is_gone(
        steering: Steering, server: Server) -> None:
    server.sharing = True  # the new master of a USR2, not promoted yet
    steering.watch(running=True)
    assert _watch_threads() == []
    assert any("pauses" in line for line in steering.log.lines)
    server.sharing = False  # promoted: the old master is gone
    steering.watch(running=True)
    assert len(_watch_threads()) == 1
    assert any("resumes" in line for line in steering.log.lines)
    server.sharing = True  # a USR2 while watching: the next look pauses it
    steering.watch(running=True)
    assert _watch_threads() == []


def test_steer_notices_an_overlap_and_the_old_master_steps_aside(
        steering: Steering, server: Server, listening: socket.socket) -> None:
    table = Table([Slot([Listener(listening)], number=0)])
    steering.watch(running=True)
    assert len(_watch_threads()) == 1
    server.new_master = True  # this master re-executed itself (USR2)
    steering.steer(table)  # type: ignore[arg-type]
    assert _watch_threads() == []  # paused from the main loop's steer, not only watch()
    assert steering.overlap.stepped_aside
    assert any("it steers them now" in line for line in steering.log.lines)
    server.new_master = False  # the new master exited before us: ours again
    steering.steer(table)  # type: ignore[arg-type]
    assert len(_watch_threads()) == 1
    assert not steering.overlap.stepped_aside
