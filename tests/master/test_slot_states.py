"""The owner of the slot and worker states (:mod:`gunicorn_prefork.master.slot_states`):
one test per transition of its table, through its public events and queries."""

from __future__ import annotations

from gunicorn_prefork.master.slot_states import SlotStates
from tests.listening import Slot


def _slots(count: int = 3) -> list[Slot]:
    return [Slot(number=number) for number in range(count)]


def test_a_new_worker_takes_the_least_served_slot_lowest_first() -> None:
    states, slots = SlotStates(), _slots()
    for pid in (1, 2, 3):
        states.assigned(pid, states.choose(slots))
    assert [states.slot_of[pid].number for pid in (1, 2, 3)] == [0, 1, 2]
    states.asked_to_leave(2)  # HUP: slot 1's worker goes, its replacement lands there
    assert states.choose(slots) is slots[1]
    assert states.staying() == {1: slots[0], 3: slots[2]}


def test_a_handover_vacates_the_slot_and_the_successor_awaits_its_boot() -> None:
    states, slots = SlotStates(), _slots(1)
    states.assigned(1, slots[0])
    assert states.hands_over(1) is slots[0]
    assert states.hands_over(1) is None  # once
    assert states.handing_over and states.counted({1: "w"}) == {}
    assert states.assigned(2, slots[0]) == 1  # the successor of 1
    assert states.successor_of(1) == 2 and states.is_awaiting_boot(2)
    states.serves(2)
    assert not states.is_awaiting_boot(2)
    states.prune({2})
    assert not states.handing_over and states.slot_of == {2: slots[0]}


def test_a_successor_leaving_early_is_next_in_line() -> None:
    """Two processes per slot at most: the second leaving worker of a slot gets no
    successor (it is counted, and new workers avoid its slot) until the first is gone."""
    states, slots = SlotStates(), _slots(2)
    states.assigned(1, slots[0])
    states.assigned(9, slots[1])
    states.hands_over(1)
    states.assigned(2, slots[0])
    assert states.hands_over(2) is slots[0]
    assert states.waits_for_predecessor(2) and not states.waits_for_predecessor(1)
    assert set(states.counted({1: "a", 2: "b", 9: "c"})) == {2, 9}
    states.hands_over(9)  # slot 1's worker leaves too: the new worker goes there
    assert states.choose(slots) is slots[1]
    assert states.assigned(3, slots[1]) == 9
    states.prune({2, 3})  # worker 1 is gone: 2 is first in line
    assert not states.waits_for_predecessor(2) and set(states.counted({2: "b", 3: "d"})) == {3}
    assert states.assigned(4, slots[0]) == 2


def test_a_worker_asked_to_leave_does_not_hand_over() -> None:
    states, slots = SlotStates(), _slots(1)
    states.assigned(1, slots[0])
    states.asked_to_leave(1)
    assert states.is_leaving(1) and states.hands_over(1) is None
    states.prune(set())
    assert not states.is_leaving(1)


def test_an_exit_vacates_the_slot_only_when_nobody_else_holds_it() -> None:
    states, slots = SlotStates(), _slots(1)
    states.assigned(1, slots[0])
    states.assigned(2, slots[0])  # overlap (HUP)
    assert states.exited(1, {1, 2}) is slots[0]
    states.assigned(3, slots[0])
    assert not states.is_awaiting_boot(3)  # slot 0 was not vacated: 2 serves it
    assert states.exited(2, {2, 3}) is slots[0]  # 3 still holds it
    assert states.exited(3, {3}) is slots[0]
    states.assigned(4, slots[0])
    assert states.is_awaiting_boot(4)  # vacated: no traffic until 4 serves


def test_draining_stranding_and_retiring() -> None:
    states, slots = SlotStates(), _slots()
    states.drain([slots[2]])
    assert states.draining == {slots[2]}
    assert states.choose(slots) is slots[0]  # never a draining slot
    states.drained(slots[2])
    assert states.keep_stranded(slots[2], 10.0) == 10.0
    assert states.keep_stranded(slots[2], 20.0) == 10.0  # the first deadline stays
    assert not states.draining and states.stranded == {slots[2]}
    states.assigned(1, slots[0])
    states.assigned(2, slots[1])
    assert states.choose(slots) is slots[2]  # a stranded slot first among the least served
    states.assigned(3, slots[2])
    states.serves(3)
    assert not states.stranded  # a worker serves it again
    states.drain([slots[1]])
    states.retired(slots[1])
    assert not states.draining


def test_a_new_table_forgets_the_slots_and_queries_are_read_only() -> None:
    states, slots = SlotStates(), _slots()
    states.assigned(1, slots[0])
    states.drain([slots[1]])
    states.keep_stranded(slots[2], 1.0)
    states.new_table()
    assert not states.slot_of and not states.draining and not states.stranded
    view = states.slot_of
    try:
        view[5] = slots[0]  # type: ignore[index]
    except TypeError:
        pass
    assert not states.slot_of
