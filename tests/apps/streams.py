"""Test WSGI app for early bytes: each response pauses until ``/release`` is asked.

One worker only (the pause is an event inside the worker process). Paths:

* ``/sse``: ``yield b""`` (headers go out), pause, then one event;
* ``/chunks``: 4 chunks, pausing after the first (served to HEAD requests too);
* ``/hijack``: a raw response written on ``environ["gunicorn.socket"]``, pause,
  then the rest (websocket libraries take over the socket like this);
* ``/socket``: ``isinstance(environ["gunicorn.socket"], socket.socket)`` in the body;
* ``/release``: ends the current pause.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_release = threading.Event()  # gevent's after the worker's monkey patching
PAUSE_LIMIT = 30.0


def _pause() -> None:
    _release.wait(PAUSE_LIMIT)
    _release.clear()


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/release":
        _release.set()
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]
    if path == "/sse":
        return _sse(start_response)
    if path == "/chunks":
        return _chunks(start_response)
    if path == "/hijack":
        return _hijack(environ["gunicorn.socket"])
    body = str(isinstance(environ["gunicorn.socket"], socket.socket)).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


def _sse(start_response: Callable[..., Any]) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/event-stream"),
                              ("Cache-Control", "no-cache")])
    yield b""
    _pause()
    yield b"data: one\n\n"


def _chunks(start_response: Callable[..., Any]) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"chunk 0\n"
    _pause()
    for number in range(1, 4):
        yield f"chunk {number}\n".encode()


def _hijack(sock: Any) -> list[bytes]:
    sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\n"
                 b"Connection: Upgrade\r\n\r\n")
    _pause()
    sock.sendall(b"after the pause")
    sock.close()
    return []
