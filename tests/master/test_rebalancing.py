"""Keep-alive rebalancing, the master's part (:mod:`gunicorn_prefork.master.rebalancing`),
on a real shared page: the caps :meth:`Rebalancing.update` writes for a group of slots
holding given numbers of connections (only slots that take connections share and
shed: not stalled, draining, stranded or unbooted ones), every cap 0 when
``prefork_load_aware`` is off, and the connections shed since the last look. The cap
arithmetic itself is ``steering_program.caps``'s (``tests/master/test_steering_program.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gunicorn_prefork.fork.progress import ProgressPage
from gunicorn_prefork.master.rebalancing import Rebalancing
from gunicorn_prefork.master.stall_watch import WatchedSlot
from gunicorn_prefork.master.steering_program import SHED_PER_LOOK, Group


@pytest.fixture
def page() -> ProgressPage:
    return ProgressPage(8)


def _group(page: ProgressPage, held: Sequence[int | None], draining: frozenset[int] = frozenset(),
           stranded: frozenset[int] = frozenset()) -> Group:
    """One slot per entry of ``held``, all serving: the connections its worker holds
    (None: its worker has not booted, no counter watched)."""
    watched = []
    for index, count in enumerate(held):
        progress = page.index_for(index) if count is not None else None
        if progress is not None and count is not None:
            page.set_held(progress, count)
        watched.append(WatchedSlot(index, progress, slot=None))
    return Group(len(held), serving=frozenset(range(len(held))), draining=draining,
                 stranded=stranded, num_workers=len(held), attach_via=(),
                 watched=tuple(watched))


def _caps(page: ProgressPage, group: Group) -> list[int | None]:
    return [None if watched.progress is None else page.cap(watched.progress)
            for watched in group.watched]


def test_a_slot_holding_three_over_the_fewest_is_capped_at_the_mean(
        page: ProgressPage) -> None:
    group = _group(page, [10, 2, 3])
    Rebalancing(page).update(group, frozenset())
    assert _caps(page, group) == [5, 0, 0]  # ceil(15 / 3); the others shed nothing


def test_an_even_group_gets_no_cap(page: ProgressPage) -> None:
    group = _group(page, [4, 5, 6])  # two over the fewest: not enough
    Rebalancing(page).update(group, frozenset())
    assert _caps(page, group) == [0, 0, 0]


def test_at_most_a_look_s_worth_is_shed_at_once(page: ProgressPage) -> None:
    group = _group(page, [100, 0])
    Rebalancing(page).update(group, frozenset())
    assert _caps(page, group) == [100 - SHED_PER_LOOK, 0]


def test_slots_that_take_no_connections_neither_share_nor_shed(page: ProgressPage) -> None:
    stalled = _group(page, [10, 2, 3])
    Rebalancing(page).update(stalled, frozenset({0}))
    assert _caps(page, stalled) == [0, 0, 0]  # a stalled slot's load is not moved
    # the fewest is a stalled slot's: the share is the takers' (10 and 3)
    Rebalancing(page).update(stalled, frozenset({1}))
    assert _caps(page, stalled) == [7, 0, 0]  # ceil(13 / 2)
    draining = _group(page, [10, 2, 3], draining=frozenset({0}))
    Rebalancing(page).update(draining, frozenset())
    assert _caps(page, draining) == [0, 0, 0]
    stranded = _group(page, [2, 10, 3], stranded=frozenset({1}))
    Rebalancing(page).update(stranded, frozenset())
    assert _caps(page, stranded) == [0, 0, 0]
    unbooted = _group(page, [10, None, 2])  # its worker boots: not watched, no cap
    Rebalancing(page).update(unbooted, frozenset())
    assert _caps(page, unbooted) == [6, None, 0]  # ceil(12 / 2)


def test_disabled_every_cap_is_0_also_one_written_before(page: ProgressPage) -> None:
    group = _group(page, [10, 2, 3])
    rebalancing = Rebalancing(page)
    rebalancing.update(group, frozenset())
    assert _caps(page, group)[0] == 5
    rebalancing.enabled = False  # prefork_load_aware turned off (a HUP)
    rebalancing.update(group, frozenset())
    assert _caps(page, group) == [0, 0, 0]


def test_no_group_writes_nothing(page: ProgressPage) -> None:
    assert Rebalancing(page).update(None, frozenset()) == 0


def test_what_workers_shed_is_counted_once(page: ProgressPage) -> None:
    group = _group(page, [10, 2])
    rebalancing = Rebalancing(page)
    assert rebalancing.update(group, frozenset()) == 0
    first, second = (watched.progress for watched in group.watched)
    assert first is not None and second is not None
    page.count_shed(first)  # the worker's part, as it ends a connection
    page.count_shed(first)
    page.count_shed(second)
    assert rebalancing.update(group, frozenset()) == 3
    assert rebalancing.update(group, frozenset()) == 0  # nothing new
    page.count_shed(first)
    assert rebalancing.update(group, frozenset()) == 1
    assert rebalancing.shed == 4
