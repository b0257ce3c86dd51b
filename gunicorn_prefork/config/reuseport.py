"""Which binds per-worker SO_REUSEPORT sockets can serve: checked at start-up and by
``--check-config``, before any socket exists.

Invariants: pure (reads the platform and the bind values only); every refusal is a
:class:`~gunicorn_prefork.errors.StartupError` naming the bind and the fix.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence

from ..errors import StartupError


def check_reuseport_possible(binds: Sequence[object], platform: str | None = None) -> None:
    """Refuse, with the fix named, what per-worker sockets cannot serve."""
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        raise StartupError(
            f"prefork_reuseport needs Linux's load-balancing SO_REUSEPORT, which this "
            f"platform ({platform}) does not have; set prefork_reuseport = False to "
            f"serve Gunicorn's shared socket")
    for bind in binds:
        if isinstance(bind, int):
            raise StartupError(
                f"bind fd://{bind} is one inherited socket and cannot be split into "
                f"per-worker SO_REUSEPORT sockets; bind a host:port instead, or set "
                f"prefork_reuseport = False")
        if not isinstance(bind, tuple):
            raise StartupError(
                f"bind unix:{bind!s}: unix sockets cannot use SO_REUSEPORT; bind a "
                f"host:port instead, or set prefork_reuseport = False to serve the "
                f"unix socket as Gunicorn's shared socket")
