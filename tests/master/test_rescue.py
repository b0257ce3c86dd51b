"""The master's side of the rescue, with real sockets: a listening socket with queued
connections, and the slots' channels (``SOCK_SEQPACKET`` pairs)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

from gunicorn_prefork.master import rescue
from gunicorn_prefork.master.rescue import Rescue
from tests.listening import Listener, Slot


def _connect(sock: socket.socket, count: int) -> list[socket.socket]:
    return [socket.create_connection(sock.getsockname()) for _ in range(count)]


def _read(channel: rescue.Channel) -> list[tuple[int, socket.socket | None]]:
    """What a worker would read from the channel (without blocking)."""
    got: list[tuple[int, socket.socket | None]] = []
    channel.worker_end.setblocking(False)
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(channel.worker_end, 1, 1)
        except BlockingIOError:
            return got
        got.append((data[0], socket.socket(fileno=fds[0]) if fds else None))


def test_queued_connections_are_moved_to_the_targets_in_turn(
        listening: socket.socket) -> None:
    source, first, second = Slot([Listener(listening)]), Slot(), Slot()
    moves = Rescue()
    for slot in (source, first, second):
        moves.channel_for(slot)
    clients = _connect(listening, 4)
    assert moves.move(source, [first, second]) == 4
    got_first, got_second = _read(moves.channel_for(first)), _read(moves.channel_for(second))
    assert len(got_first) == len(got_second) == 2
    # the passed sockets are the clients' connections: what one sends the other reads
    for _, conn in got_first + got_second:
        assert conn is not None
        conn.sendall(b"x")
    assert all(client.recv(1) == b"x" for client in clients)
    assert moves.moved == 4 and not moves.pending


def test_nothing_queued_moves_nothing_and_never_blocks(listening: socket.socket) -> None:
    source, target = Slot([Listener(listening)]), Slot()
    moves = Rescue()
    moves.channel_for(target)
    listening.setblocking(True)  # as a booting gevent worker leaves it, briefly
    assert moves.move(source, [target]) == 0
    assert moves.move(source, []) == 0


def test_a_full_channel_keeps_the_connection_pending_until_there_is_room(
        listening: socket.socket) -> None:
    source, target = Slot([Listener(listening)]), Slot()
    moves = Rescue()
    channel = moves.channel_for(target)
    while channel.send(rescue.PROBE):  # fill it
        pass
    _connect(listening, 2)
    assert moves.move(source, [target]) == 1  # accepted one, could not send it
    assert len(moves.pending) == 1
    assert moves.move(source, [target]) == 0  # nothing more accepted while pending
    _read(channel)  # the worker reads
    moves.tick([], [target])  # a tick without stalls sends what is pending
    assert not moves.pending
    assert [index for index, conn in _read(channel) if conn is not None] == [0]


def test_a_probe_goes_once_per_stall() -> None:
    slot = Slot()
    moves = Rescue()
    channel = moves.channel_for(slot)
    moves.tick([slot], [])
    moves.tick([slot], [])
    assert _read(channel) == [(rescue.PROBE, None)]
    moves.tick([], [])  # the stall ended
    moves.tick([slot], [])
    assert _read(channel) == [(rescue.PROBE, None)]


def test_a_retired_slots_unread_connections_go_to_a_live_slot(
        listening: socket.socket) -> None:
    source, retired, live = Slot([Listener(listening)]), Slot(), Slot()
    moves = Rescue()
    for slot in (source, retired, live):
        moves.channel_for(slot)
    _connect(listening, 1)
    moves.move(source, [retired])  # sent, but its worker never read it
    moves.keep_only([source, live], [live])
    assert [index for index, conn in _read(moves.channel_for(live)) if conn] == [0]
    assert not moves.pending


def test_a_worker_closes_every_end_but_its_own() -> None:
    mine, other = Slot(), Slot()
    moves = Rescue()
    own, theirs = moves.channel_for(mine), moves.channel_for(other)
    closed = moves.closed_in_child(mine)
    assert own.worker_end not in closed
    assert {id(s) for s in closed} == {id(own.master_end), id(theirs.master_end),
                                        id(theirs.worker_end)}


def test_a_forked_child_does_not_keep_the_masters_pending_connections(
        listening: socket.socket) -> None:
    source, target = Slot([Listener(listening)]), Slot()
    moves = Rescue()
    channel = moves.channel_for(target)
    while channel.send(rescue.PROBE):
        pass
    client = socket.create_connection(listening.getsockname())
    moves.move(source, [target])
    assert len(moves.pending) == 1
    pid = os.fork()
    if pid == 0:  # the child: nothing pending, the master's copy is gone here
        os._exit(0 if not moves.pending else 1)
    assert os.waitpid(pid, 0)[1] == 0
    moves.pending.pop()[1].close()  # the master's copy closes: the client sees the end
    client.settimeout(5)
    assert client.recv(1) == b""


def test_what_a_gone_worker_left_unread_goes_to_a_live_one(listening: socket.socket) -> None:
    """A slot no worker serves now (its worker crashed or left before reading): the
    connections in its channel and in its queue are passed on; probes dropped."""
    gone, live = Slot([Listener(listening)]), Slot()
    moves = Rescue()
    channel = moves.channel_for(gone)
    moves.channel_for(live)
    first, second = socket.socketpair()
    assert channel.send(0, first.fileno()) and channel.send(rescue.PROBE)
    first.close()
    client = _connect(listening, 1)[0]
    assert moves.move_unserved(gone, [live]) == 1  # from the queue
    assert moves.moved == 2 and not moves.pending
    got = _read(moves.channel_for(live))
    assert [index for index, _ in got] == [0, 0]
    assert _read(channel) == []
    passed = [conn for _, conn in got if conn is not None]
    for conn in passed:
        conn.sendall(b"x")
    assert second.recv(1) == b"x" and client.recv(1) == b"x"
    assert moves.move_unserved(gone, []) == 0
    for sock in (second, client, *passed):
        sock.close()


def test_a_tick_inside_the_main_loops_call_does_nothing(listening: socket.socket) -> None:
    """The stall tick is a signal handler: it can run in the middle of the main
    loop's keep_only(), e.g. between reading a pending connection and sending it."""
    retired, live = Slot([Listener(listening)]), Slot()
    moves = Rescue()
    left = moves.channel_for(retired)
    target = moves.channel_for(live)
    pairs = [socket.socketpair() for _ in range(3)]
    for ours, _ in pairs:
        assert left.send(0, ours.fileno())
        ours.close()
    real_send = target.send
    ticks = []

    def send_with_a_tick(message: int, fd: int | None = None) -> bool:
        if not ticks:  # the signal comes in the middle of the main loop's send
            ticks.append(1)
            moves.tick([], [live])
            moves.move_unserved(retired, [live])
        return real_send(message, fd)

    target.send = send_with_a_tick  # type: ignore[method-assign]
    moves.keep_only([live], [live])
    got = _read(target)
    assert len(got) == 3 and not moves.pending
    for (_, conn), (_, theirs) in zip(got, pairs):
        assert conn is not None
        conn.sendall(b"x")
        assert theirs.recv(1) == b"x"  # each connection arrived once, in order
        conn.close()
        theirs.close()


def test_a_send_error_keeps_the_connection_pending(listening: socket.socket) -> None:
    source, target = Slot([Listener(listening)]), Slot()
    moves = Rescue()
    channel = moves.channel_for(target)
    channel.master_end.shutdown(socket.SHUT_WR)  # every send now fails (EPIPE)
    client = _connect(listening, 1)[0]
    assert moves.move(source, [target]) == 1
    assert len(moves.pending) == 1  # not dropped: the client is not reset
    _, conn = moves.pending[0]
    conn.sendall(b"x")
    assert client.recv(1) == b"x"
    client.close()


def test_a_probe_taken_from_an_unserved_slot_is_sent_again() -> None:
    """Its next worker must still be asked to show that it runs."""
    slot, other = Slot(), Slot()
    moves = Rescue()
    channel = moves.channel_for(slot)
    moves.channel_for(other)
    moves.tick([slot], [])
    moves.move_unserved(slot, [other])  # takes the probe with what was unread
    assert _read(channel) == []
    moves.tick([slot], [])
    assert _read(channel) == [(rescue.PROBE, None)]


def test_a_freed_spare_is_free_at_once_also_under_gevents_patched_os_close() -> None:
    """gevent 25.8+ patches ``os.close`` to close a non-file descriptor only at the
    loop's next turn: a worker at its ``nofile`` limit then read a moved connection
    with the descriptor cut off (``MSG_CTRUNC``) although it had freed its spare."""
    script = textwrap.dedent("""
        import gevent.monkey
        gevent.monkey.patch_all()
        import gevent, os, resource, socket
        from gunicorn_prefork.master.rescue import Spare
        gevent.sleep(0)  # the hub runs, as in a worker
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        spare = Spare()
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        x, y = socket.socketpair()
        socket.send_fds(a, [b"\\0"], [x.fileno()])
        held = []
        while True:
            try:
                held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        spare.free()
        _, fds, flags, _ = socket.recv_fds(b, 1, 1)
        print(len(fds), int(flags & socket.MSG_CTRUNC))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.stdout.split() == ["1", "0"], result.stdout + result.stderr


def test_nothing_is_moved_to_a_slot_without_free_places(listening: socket.socket) -> None:
    """Issue 16, full pools: a target gets at most its free places, counting what
    already waits in its channel; the rest stays queued on the source."""
    source, full, roomy = Slot([Listener(listening)]), Slot(), Slot()
    moves = Rescue()
    for slot in (source, full, roomy):
        moves.channel_for(slot)
    places = {id(full): 0, id(roomy): 3}
    moves.room = lambda slot: places[id(slot)] - moves.unread(slot)
    clients = _connect(listening, 5)
    assert moves.move(source, [full, roomy]) == 3
    assert moves.unread(roomy) == 3 and moves.unread(full) == 0
    assert not moves.pending
    assert moves.move(source, [full, roomy]) == 0      # no room left anywhere
    assert len(_read(moves.channel_for(roomy))) == 3   # its worker read them
    assert moves.move(source, [full, roomy]) == 2      # room again: the other two
    del clients


def test_room_left_is_the_places_less_held_and_unread() -> None:
    assert rescue.room_left(10, 4, 3) == 3
    assert rescue.room_left(10, 10, 2) == -2
    assert rescue.room_left(10, None, 0) is None   # no counter for the slot
    assert rescue.room_left(None, 4, 0) is None    # worker_connections unknown


def test_each_moved_connection_reads_its_targets_room_once(listening: socket.socket) -> None:
    """Reading a target's room costs the master a syscall (its channel's unread
    count): a connection passed to the first target with room reads it once."""
    source, first, second = Slot([Listener(listening)]), Slot(), Slot()
    moves = Rescue()
    for slot in (source, first, second):
        moves.channel_for(slot)
    reads: list[int] = []

    def room(slot: Slot) -> int:
        reads.append(id(slot))
        return 10 - moves.unread(slot)

    moves.room = room
    clients = _connect(listening, 4)
    assert moves.move(source, [first, second]) == 4
    assert len(_read(moves.channel_for(first))) == len(_read(moves.channel_for(second))) == 2
    # one read per connection, and one that found nothing more queued
    assert len(reads) == 4 + 1
    del clients
