"""The shared progress page (:mod:`gunicorn_prefork.fork.progress`), across a real fork."""

from __future__ import annotations

import os

from gunicorn_prefork.fork.progress import CAPACITY, ProgressPage


def test_a_workers_bumps_are_seen_by_the_master() -> None:
    page, slot = ProgressPage(), object()
    index = page.index_for(slot)
    assert index is not None and page.index_for(slot) == index
    pid = os.fork()
    if pid == 0:  # the worker
        for _ in range(3):
            page.bump(index)
        page.took(index)
        page.took(index)
        page.set_held(index, 5)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    assert page.read(index) == 5 and page.held(index) == 5 and page.taken(index) == 2
    other = page.index_for(object())
    assert other is not None and page.held(other) == 0 and page.read(other) == 0
    assert page.taken(other) == 0


def test_a_reused_counter_starts_with_nothing_taken() -> None:
    page = ProgressPage()
    slots = [object() for _ in range(CAPACITY)]
    for slot in slots:
        index = page.index_for(slot)
        assert index is not None
        page.took(index)
    page.keep_only(slots[1:])
    index = page.index_for(object())
    assert index is not None and page.taken(index) == 0


def test_counters_of_retired_slots_are_reused_and_the_page_has_a_limit() -> None:
    page = ProgressPage()
    slots = [object() for _ in range(CAPACITY)]
    indices = {page.index_for(slot) for slot in slots}
    assert len(indices) == CAPACITY and page.index_for(object()) is None  # full
    page.keep_only(slots[1:])
    assert page.index_for(object()) is not None  # slot 0's counter is free again


def test_held_by_a_slot_is_what_its_worker_said() -> None:
    page = ProgressPage()
    slot = object()
    index = page.index_for(slot)
    assert index is not None
    page.set_held(index, 7)
    assert page.held_by(slot) == 7


def test_the_page_is_sized_for_the_workers() -> None:
    """More than 256 workers: every slot still gets its counters (twice the workers
    at start: room for TTIN and a HUP with more)."""
    from gunicorn_prefork.fork.progress import CAPACITY, ProgressPage, capacity_for

    assert capacity_for(4) == CAPACITY and capacity_for(300) == 600
    page = ProgressPage(capacity_for(300))
    slots = [object() for _ in range(600)]
    indices = [page.index_for(slot) for slot in slots]
    assert None not in indices and len(set(indices)) == 600
    last = indices[-1]
    assert last is not None
    page.set_held(last, 7)
    page.took(last)
    assert page.held(last) == 7 and page.taken(last) == 1 and page.read(last) == 1
    assert page.index_for(object()) is None  # full
