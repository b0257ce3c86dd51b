"""A kept connection the worker ends itself (shedding) closes gently, as servers do.

When the worker ends a keep-alive connection after a response (``Connection:
close``, :mod:`.shedding`), the client may have written its next request already:
it reads the response's headers and sends on, before the streamed body ends. A
plain ``close()`` with those bytes unread makes the kernel answer with a reset, and
a client that has not read the end of the body yet loses it (seen: 73 resets in 79
such requests). Stock Gunicorn never ends a kept connection this way, so it never
resets one.

So such a connection closes the way HTTP servers linger (Apache's lingering close):
``shutdown(SHUT_WR)`` (the client reads the whole response and the end of the
stream), then what the client still sends is read and dropped until it closes its
side or :data:`LINGER_SECONDS` pass, then ``close()``. Only connections marked by
the shedding are touched; every other close is Gunicorn's own.

Invariants: runs in the connection's own greenlet (Gunicorn's handler, at its end),
waits at most :data:`LINGER_SECONDS`, never raises.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

from .. import _gunicorn
from .request_wait import ending

#: Longest a gently closed connection waits for the client to close its side.
LINGER_SECONDS = 2.0


def install() -> None:
    """In a worker: Gunicorn's close of a client connection lingers where marked."""
    _gunicorn.install_close(_wrap)


def _wrap(original: Callable[[Any], None]) -> Callable[[Any], None]:
    def close(sock: Any) -> None:
        if ending(sock):
            linger(sock)
        original(sock)
    return close


def linger(sock: Any, seconds: float = LINGER_SECONDS) -> None:
    """Send the end of the stream, drop what the peer still sends until it closes
    (or ``seconds`` pass)."""
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(65536):
                return
    except (OSError, ValueError):  # reset, timed out, already closed
        return
