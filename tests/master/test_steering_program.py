"""The cBPF steering program, checked against the kernel with real sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from gunicorn_prefork.master import steering_program
from gunicorn_prefork.master.stall_watch import WatchedSlot


def test_program_for_contiguous_indices_returns_the_hash_slot() -> None:
    code = steering_program.program([0, 1, 2])
    assert code[-1][0] == 0x16 and code[1] == (0x94, 0, 0, 3)


def test_program_maps_positions_to_allowed_indices() -> None:
    code = steering_program.program([0, 2, 5])
    assert [insn[3] for insn in code if insn[0] == 0x06] == [0, 2, 5]
    with pytest.raises(ValueError):
        steering_program.program([])


@pytest.fixture
def group() -> Iterator[list[socket.socket]]:
    members: list[socket.socket] = []
    port = 0
    for _ in range(3):
        member = socket.socket()
        member.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        member.bind(("127.0.0.1", port))
        port = member.getsockname()[1]
        member.listen(1024)
        member.setblocking(False)
        members.append(member)
    yield members
    for member in members:
        member.close()


def _accepted(member: socket.socket) -> int:
    count = 0
    while True:
        try:
            conn, _ = member.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


def _connect(port: int, n: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]


def test_steered_away_index_gets_nothing_and_detach_restores(group: list[socket.socket]) -> None:
    port = group[0].getsockname()[1]
    steering_program.attach(group[0], [0, 2])
    clients = _connect(port, 300)
    counts = [_accepted(member) for member in group]
    assert counts[1] == 0 and counts[0] > 50 and counts[2] > 50
    steering_program.detach(group[0])
    steering_program.detach(group[0])  # detaching twice is fine
    clients += _connect(port, 300)
    assert all(_accepted(member) > 30 for member in group)
    for client in clients:
        client.close()


def test_closed_member_index_is_taken_by_the_last(group: list[socket.socket]) -> None:
    """The order the slot table keeps: close index 0, the last moves into it."""
    port = group[0].getsockname()[1]
    group[0].close()
    steering_program.attach(group[1], [0])
    clients = _connect(port, 50)
    assert (_accepted(group[1]), _accepted(group[2])) == (0, 50)
    for client in clients:
        client.close()


# -- the policy: which slot indices take new connections ------------------------------

def test_only_serving_slots_that_do_not_drain() -> None:
    assert steering_program.allowed_indices(3, serving={0, 2}, draining=(), stranded=(),
                                    num_workers=3) == (0, 2)
    assert steering_program.allowed_indices(3, serving={0, 1, 2}, draining={1}, stranded=(),
                                    num_workers=2) == (0, 2)


def test_all_serving_or_none_left_means_plain_hashing() -> None:
    assert steering_program.allowed_indices(3, serving={0, 1, 2}, draining=(), stranded=(),
                                    num_workers=3) == ()
    assert steering_program.allowed_indices(1, serving=(), draining=(), stranded=(),
                                    num_workers=1) == ()


def test_nobody_serving_queues_on_slots_that_will_get_a_worker() -> None:
    assert steering_program.allowed_indices(4, serving=(), draining={3}, stranded={0},
                                    num_workers=2) == (1, 2)


# -- the policy: which slots take connections the rescue moves -------------------------

def _group(count: int, serving: set[int], booted: set[int], draining: frozenset[int] = frozenset(),
           stranded: frozenset[int] = frozenset()) -> steering_program.Group:
    watched = tuple(WatchedSlot(index + 1, index if index in booted else None, f"slot{index}")
                    for index in range(count))
    return steering_program.Group(count, frozenset(serving), draining, stranded, num_workers=count,
                          attach_via=(), watched=watched)


def test_moved_connections_go_to_booted_serving_slots_that_do_not_stall() -> None:
    group = _group(4, serving={0, 1, 2, 3}, booted={0, 1, 2, 3})
    assert group.takers() == (0, 1, 2, 3)
    assert group.takers(stalled={1, 3}) == (0, 2)


def test_no_moved_connections_to_booting_draining_stranded_or_unserved_slots() -> None:
    group = _group(5, serving={0, 1, 2, 3}, booted={1, 2, 3, 4}, draining=frozenset({2}),
                   stranded=frozenset({3}))
    # 0 boots, 2 drains, 3 is stranded, 4 has no serving worker
    assert group.takers() == (1,)
    assert group.takers(stalled={1}) == ()


# -- the policy: the least loaded slots first (issue 16) ---------------------------------

def test_slots_holding_about_the_same_are_not_weighed() -> None:
    assert steering_program.weighted((0, 1, 2, 3), {0: 4, 1: 4, 2: 4, 3: 4}) == (0, 1, 2, 3)
    # short connections: counts that come and go, a small gap against their mean
    assert steering_program.weighted((0, 1), {0: 30, 1: 35}) == (0, 1)
    assert steering_program.weighted((2,), {2: 100}) == (2,)


def test_new_connections_go_to_the_slots_holding_the_fewest() -> None:
    # one below the top: each of those slots gets as many entries as it is below
    assert steering_program.weighted((0, 1, 2, 3), {0: 1, 1: 0, 2: 0, 3: 0}) == (1, 2, 3)
    # a slot whose worker boots has no load yet: not weighed as empty
    assert steering_program.weighted((0, 1, 2, 3), {0: 1}) == (0, 1, 2, 3)
    assert steering_program.weighted((0, 1, 2, 3), {0: 1, 1: 1, 2: 1, 3: 0}) == (3,)
    assert steering_program.describe((2, 3)) == "2, 3"


def test_a_burst_between_two_looks_tops_up_every_slot_below_the_top() -> None:
    """Weights, not a winner (issue 28): each slot's share is how far it is below
    the most loaded one, so a burst fills the least loaded most and skips none."""
    table = steering_program.weighted((0, 1, 2, 3), {0: 7, 1: 4, 2: 2, 3: 2})
    assert sorted(table) == [1] * 3 + [2] * 5 + [3] * 5
    assert steering_program.describe(table) == "1x3, 2x5, 3x5"
    # 16 connections spread as the table says: every slot ends within 2 of the others
    loads = {0: 7, 1: 4, 2: 2, 3: 2}
    for arrival in range(16):
        loads[table[arrival * 7919 % len(table)]] += 1
    assert max(loads.values()) - min(loads.values()) <= 3
    assert min(loads[1], loads[2], loads[3]) > 4  # none skipped


def test_a_big_gap_is_scaled_to_a_short_table() -> None:
    table = steering_program.weighted((0, 1, 2), {0: 1000, 1: 0, 2: 990})
    assert len(table) <= steering_program.MAX_ENTRIES
    assert table.count(2) == 1 and table.count(1) > 50 and 0 not in table


def test_the_program_table_weighs_only_allowed_slots() -> None:
    group = _group(3, serving={0, 1, 2}, booted={0, 1, 2})
    assert group.table((), {0: 1, 1: 1, 2: 1}) == ()  # all alike: the plain hash
    assert group.table((), {0: 8, 1: 0, 2: 0}) == (1, 2)
    assert group.table({1}, {0: 8, 1: 0, 2: 0}) == (2,)  # not a stalled one
    draining = _group(3, serving={0, 1, 2}, booted={0, 1, 2}, draining=frozenset({1}))
    assert draining.table((), {0: 8, 1: 0, 2: 0}) == (2,)
    booting = _group(3, serving=set(), booted=set())
    assert booting.table((), {}) == ()


def test_the_steered_slots_take_every_new_connection(group: list[socket.socket]) -> None:
    port = group[0].getsockname()[1]
    steering_program.attach(group[0], steering_program.weighted((0, 1, 2), {0: 9, 1: 0, 2: 9}))
    clients = _connect(port, 100)
    assert [_accepted(member) for member in group] == [0, 100, 0]
    for client in clients:
        client.close()


def test_a_weighted_table_shares_a_burst_in_the_kernel(group: list[socket.socket]) -> None:
    port = group[0].getsockname()[1]
    steering_program.attach(group[0], steering_program.weighted((0, 1, 2), {0: 6, 1: 3, 2: 0}))
    clients = _connect(port, 90)  # shares 0, 3 and 6 of 9
    accepted = [_accepted(member) for member in group]
    assert accepted[0] == 0 and accepted[1] > 10 and accepted[2] > accepted[1]
    for client in clients:
        client.close()


# -- keep-alive rebalancing: which workers end connections -------------------------------

def test_a_slot_three_over_the_fewest_ends_one_connection_per_look() -> None:
    # mean 8, fewest 6: down to 8 (two over the fewest at most)
    assert steering_program.caps({0: 9, 1: 9, 2: 8, 3: 6}, {0, 1, 2, 3}) == \
        {0: 8, 1: 8, 2: 0, 3: 0}
    # one slot far over: down to the mean at once (7.75 -> 8)
    assert steering_program.caps({0: 13, 1: 6, 2: 6, 3: 6}, {0, 1, 2, 3}) == \
        {0: 8, 1: 0, 2: 0, 3: 0}
    assert steering_program.caps({0: 5, 1: 4, 2: 4, 3: 3}, {0, 1, 2, 3}) == \
        {0: 0, 1: 0, 2: 0, 3: 0}
    # a new worker holding nothing: each of the others down to the mean (11)
    assert steering_program.caps({0: 0, 1: 16, 2: 16}, {0, 1, 2}) == {0: 0, 1: 11, 2: 11}
    # ... in steps of at most SHED_PER_LOOK
    step = steering_program.SHED_PER_LOOK
    assert steering_program.caps({0: 0, 1: 300, 2: 300}, {0, 1, 2}) == \
        {0: 0, 1: 300 - step, 2: 300 - step}


def test_only_slots_that_take_connections_share_and_shed() -> None:
    # slot 3 is stalled: it neither sheds nor counts as the fewest
    assert steering_program.caps({0: 9, 1: 3, 2: 3, 3: 0}, {0, 1, 2}) == \
        {0: 5, 1: 0, 2: 0, 3: 0}
    assert steering_program.caps({0: 9, 1: 0}, {0}) == {0: 0, 1: 0}


def test_a_shedding_slot_gets_no_new_connection_while_another_may() -> None:
    """A client a slot ended (over its cap) must not come back to it at once: the
    shedding made it the least loaded, and it would be ended again."""
    group = _group(3, serving={0, 1, 2}, booted={0, 1, 2})
    assert group.table((), {0: 10, 1: 16, 2: 17}, shedding={2}) == (0,)
    assert group.table((), {0: 5, 1: 5, 2: 5}, shedding={2}) == (0, 1)
    assert group.table((), {0: 5, 1: 5, 2: 5}, shedding={0, 1, 2}) == ()  # none other
