"""One write per small response instead of two.

Gunicorn writes a response's status line and headers with one ``sendall`` and each
body chunk with another; for small responses the two send syscalls are the largest
single cost in a profile of the worker (about half its CPU on hello world).
:class:`CoalescingSocket` holds the first write of a response (the headers) and
sends it together with the next one. It is used for one response only; anything
else asked of it (``sendfile``, ``send``, ``fileno``, ...) first sends what it
holds, so the bytes on the wire are always in order.
"""

from __future__ import annotations

from typing import Any

#: A body write up to this size is joined to the held headers in one buffer;
#: larger ones go out right after them, uncopied.
JOIN_LIMIT = 64 * 1024


class CoalescingSocket:
    """Wraps the client socket for the duration of one response."""

    __slots__ = ("_held", "_sock", "_started")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._held: bytes | None = None
        self._started = False

    def sendall(self, data: Any, *args: Any) -> None:
        if not self._started:
            self._started = True
            self._held = bytes(data)
            return
        held, self._held = self._held, None
        if held is not None:
            if len(data) <= JOIN_LIMIT:
                self._sock.sendall(b"".join((held, data)), *args)
                return
            self._sock.sendall(held)
        self._sock.sendall(data, *args)

    def flush(self) -> None:
        """Send what is held (a response with headers only, or before other calls)."""
        self._started = True
        held, self._held = self._held, None
        if held is not None:
            self._sock.sendall(held)

    def __getattr__(self, name: str) -> Any:
        self.flush()
        return getattr(self._sock, name)
