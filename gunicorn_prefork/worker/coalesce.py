"""One send for a response's headers and its first body write.

Gunicorn's ``Response.write`` sends the status line and headers with one
``sendall`` and the body bytes with another; for small responses those two send
syscalls are the largest single cost in a profile of the worker (about half its
CPU on hello world). :func:`install` wraps ``Response.write`` (in the worker
process only) so that, on the call that sends the headers, they go out together
with that call's body bytes in one buffer.

Invariant: every byte a ``write`` call hands to the socket has left when the call
returns, exactly as with Gunicorn's own ``write``: nothing is held across the
application's next step (a streaming generator, an SSE ``yield b""``, a HEAD
response's headers). The client socket itself is never replaced:
``environ["gunicorn.socket"]`` is the real socket.

Each buffer the joiner sends goes out with one ``send`` and, only for what that did
not take, ``sendall`` (:func:`send_all`): gevent's ``sendall`` asks the kernel for
the socket's send buffer size (a ``getsockopt`` syscall) on every call, 2 % of a
worker's CPU on hello world.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _gunicorn

#: A body write up to this size is joined to the headers in one buffer; larger
#: ones go out right after them, uncopied.
JOIN_LIMIT = 64 * 1024

Write = Callable[[Any, bytes], None]


class HeaderJoiner:
    """Stands in for the client socket during the one ``write`` that sends headers.

    The first ``sendall`` (the headers) is held; the second (body bytes, already
    framed when chunked) is sent together with it. :meth:`flush` sends what is
    still held; the caller runs it before ``write`` returns.
    """

    __slots__ = ("_held", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._held: bytes | None = None

    def sendall(self, data: Any, *args: Any) -> None:
        if self._held is None:
            self._held = bytes(data)
            return
        held, self._held = self._held, b""
        if held and len(data) <= JOIN_LIMIT:
            send_all(self._sock, b"".join((held, data)), *args)
            return
        if held:
            send_all(self._sock, held)
        send_all(self._sock, data, *args)

    def flush(self) -> None:
        held, self._held = self._held, b""
        if held:
            send_all(self._sock, held)

    def __getattr__(self, name: str) -> Any:
        self.flush()
        return getattr(self._sock, name)


def send_all(sock: Any, data: bytes, *args: Any) -> None:
    """``sock.sendall(data)``: one ``send``, then ``sendall`` for what it did not take."""
    sent = sock.send(data, *args)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:], *args)


def joining(original: Write) -> Write:
    """``Response.write`` (``original``), with the headers joined to the first body bytes."""
    def write(response: Any, data: bytes) -> None:
        if _gunicorn.response_headers_sent(response):
            original(response, data)
            return
        sock = _gunicorn.response_socket(response)
        joiner = HeaderJoiner(sock)
        _gunicorn.set_response_socket(response, joiner)
        try:
            original(response, data)
        finally:
            _gunicorn.set_response_socket(response, sock)
            joiner.flush()
    return write


def install() -> None:
    """In a worker process: every response's first write joins headers and body."""
    _gunicorn.install_response_write(joining)
