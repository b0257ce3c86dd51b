"""The slot table with real sockets on 127.0.0.1 (no gunicorn process needed)."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import pytest
from gunicorn.config import Config

from gunicorn_prefork.errors import StartupError
from gunicorn_prefork.master.slot_table import SlotTable
from tests.server import listeners

log = logging.getLogger("test")


def _cfg() -> Any:
    return Config()


def _listening(sock: Any) -> bool:
    return bool(sock.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))


def test_port_zero_is_resolved_once_and_shared() -> None:
    table = SlotTable.create(_cfg(), log, [("127.0.0.1", 0)], 3)
    try:
        ports = {listener.sock.getsockname()[1] for listener in table.listeners()}
        assert len(ports) == 1 and ports != {0}
        assert len(table.slots) == 3 and all(_listening(s) for s in table.listeners())
        assert all(s.sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
                   for s in table.listeners())
    finally:
        table.close()


def test_add_retire_and_listener_order() -> None:
    table = SlotTable.create(_cfg(), log, [("127.0.0.1", 0), ("127.0.0.1", 0)], 2)
    try:
        added = table.add()
        assert [len(slot.sockets) for slot in table.slots] == [2, 2, 2]
        assert table.listeners()[-2:] == added.sockets
        first = table.slots[0]
        table.retire(first)
        assert first not in table.slots and first.sockets[0].sock is None
    finally:
        table.close()


@pytest.mark.parametrize("shared", [False, True])
def test_a_retired_slot_stops_listening_whoever_else_holds_it(shared: bool) -> None:
    """Another descriptor of a retired slot's socket (the watch thread's poll, a worker
    just forked, a process the app forked) must not keep it in the SO_REUSEPORT group,
    where connections steered to its old index would be reset when it closes; except in
    a USR2 overlap (``shared``), where the other master's workers still serve it."""
    table = SlotTable.create(_cfg(), log, [("127.0.0.1", 0)], 3)
    port = table.addresses[0][1]
    elsewhere = socket.socket(fileno=os.dup(table.slots[1].sockets[0].sock.fileno()))
    try:
        assert listeners(port) == 3
        table.retire(table.slots[1], shared=shared)
        assert listeners(port) == (3 if shared else 2)
        assert elsewhere.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == shared
        for _ in range(20):  # every connection lands where it is accepted
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
    finally:
        elsewhere.close()
        table.close()


def test_adopt_groups_by_address_in_order() -> None:
    table = SlotTable.create(_cfg(), log, [("127.0.0.1", 0), ("127.0.0.1", 0)], 2)
    fds = [socket.dup(listener.sock.fileno()) for listener in table.listeners()]
    adopted = SlotTable.adopt(_cfg(), log, fds)
    try:
        assert adopted.addresses == table.addresses
        assert len(adopted.slots) == 2
        for old, new in zip(table.listeners(), adopted.listeners()):
            assert old.sock.getsockname() == new.sock.getsockname()
    finally:
        adopted.close()
        table.close()


def test_adopt_refuses_a_socket_without_reuseport() -> None:
    plain = socket.socket()
    plain.bind(("127.0.0.1", 0))
    plain.listen()
    with pytest.raises(StartupError, match="has no SO_REUSEPORT"):
        SlotTable.adopt(_cfg(), log, [plain.fileno()])
    plain.close()


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(StartupError, match=f"127.0.0.1:{port}: the address is already in use"):
            SlotTable.create(_cfg(), log, [("127.0.0.1", port)], 2)


def test_queued_counts_the_accept_queue() -> None:
    from gunicorn_prefork.master.slot_table import queued

    table = SlotTable.create(_cfg(), log, [("127.0.0.1", 0)], 1)
    try:
        listener = table.listeners()[0]
        assert queued(listener) == 0
        clients = [socket.create_connection(listener.sock.getsockname()) for _ in range(3)]
        assert queued(listener) == 3
        for client in clients:
            client.close()
    finally:
        table.close()
