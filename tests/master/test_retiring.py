"""Which slots drain and when they close (:mod:`gunicorn_prefork.master.retiring`),
over the state owner and slots with real listening sockets (their queues are real)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from gunicorn_prefork.master import retiring
from gunicorn_prefork.master.slot_states import SlotStates
from tests.listening import Listener, Slot

log = logging.getLogger("test")


@dataclass
class Table:
    """The slot table's shape as retiring reads and changes it."""

    slots: list[Any]
    retired: list[Any] = field(default_factory=list)
    shared: list[bool] = field(default_factory=list)

    def retire(self, slot: Any, shared: bool = False) -> None:
        self.slots.remove(slot)
        self.retired.append(slot)
        self.shared.append(shared)


@dataclass
class Worker:
    age: int


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    made = []
    for _ in range(3):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        made.append(sock)
    yield made
    for sock in made:
        sock.close()


def test_ttou_drains_the_oldest_workers_slot_and_closes_it_once_it_left(
        sockets: list[socket.socket]) -> None:
    slots = [Slot([Listener(sock)], number) for number, sock in enumerate(sockets)]
    table, states = Table(list(slots)), SlotStates()
    workers = {10 + n: Worker(age=n) for n in range(3)}
    for n, slot in enumerate(slots):
        states.assigned(10 + n, slot)
    chosen = retiring.choose_drained(states, table, workers, num_workers=2)  # type: ignore[arg-type]
    assert chosen == [slots[0]]  # the oldest worker's slot
    states.drain(chosen)
    retiring.settle(states, table, workers, 2, 30.0, log, lambda: None)  # type: ignore[arg-type]
    assert table.retired == []  # its worker still holds it
    del workers[10]
    retiring.settle(states, table, workers, 2, 30.0, log, lambda: None)  # type: ignore[arg-type]
    assert table.retired == [slots[0]] and not states.draining
    assert table.shared == [False]  # no USR2 overlap: it stops listening everywhere


def test_in_a_usr2_overlap_a_retired_slot_only_closes_the_masters_copy(
        sockets: list[socket.socket]) -> None:
    slots = [Slot([Listener(sock)], number) for number, sock in enumerate(sockets)]
    table, states = Table(list(slots)), SlotStates()
    states.drain([slots[2]])
    retiring.settle(states, table, {}, 2, 30.0, log, lambda: None,  # type: ignore[arg-type]
                    shared=True)
    assert table.retired == [slots[2]] and table.shared == [True]


def test_a_drained_slot_with_connections_queued_is_kept_stranded(
        sockets: list[socket.socket]) -> None:
    slots = [Slot([Listener(sock)], number) for number, sock in enumerate(sockets)]
    table, states = Table(list(slots)), SlotStates()
    states.drain([slots[2]])
    client = socket.create_connection(sockets[2].getsockname())
    try:
        retiring.settle(states, table, {}, 2, 30.0, log, lambda: None)  # type: ignore[arg-type]
        assert table.retired == [] and states.stranded == {slots[2]}
        assert states.choose(table.slots) is slots[2]  # the next new worker takes it
        retiring.settle(states, table, {}, 2, 0.0, log, lambda: None)  # type: ignore[arg-type]
        # the first deadline (30 s) holds; a workerless slot without a queue retires
        # instead: closing it loses nothing
        assert table.retired == [slots[1]] and slots[2] in table.slots
    finally:
        client.close()
