"""The shapes of a slot and its listeners, as the master's slot code reads them (unit
tests; the ``listening`` fixture in ``conftest.py`` gives a real socket to put in them)."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Listener:
    """A gunicorn listener's shape: the socket is ``.sock``."""

    sock: socket.socket


@dataclass
class Slot:
    """A slot's shape: one listener per bind in ``.sockets``."""

    sockets: list[Any] = field(default_factory=list)
