"""The shapes of a slot and its listeners, as the master's slot code reads them (unit
tests; the ``listening`` fixture in ``conftest.py`` gives a real socket to put in them)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

from gunicorn_prefork.master import slot_table


@dataclass
class Listener:
    """A gunicorn listener's shape: the socket is ``.sock``."""

    sock: socket.socket


class Slot(slot_table.Slot):
    """A slot of the master's table (one listener per bind in ``.sockets``), made of
    the listeners a test gives."""

    def __init__(self, sockets: list[Any] | None = None, number: int = 0) -> None:
        super().__init__(number, sockets if sockets is not None else [])
