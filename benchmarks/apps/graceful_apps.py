"""Apps for ``benchmarks/graceful.py``: long requests, streams, a hijacked socket."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/sse":
        return _sse(start_response)
    if path == "/chunks":
        return _chunks(start_response)
    if path == "/hijack":
        sock = environ["gunicorn.socket"]
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n")
        time.sleep(2)
        sock.close()
        return []
    if path == "/socket":
        body = type(environ["gunicorn.socket"]).__module__.encode()
    else:
        if path == "/sleep":
            time.sleep(float(environ.get("QUERY_STRING") or 1))
        body = b"ok\n"
    start_response("200 OK", [("Content-Length", str(len(body))),
                              ("X-Worker-Pid", str(os.getpid()))])
    return [body]


def _sse(start_response: Callable[..., Any]) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/event-stream")])
    yield b""
    time.sleep(2)
    yield b"data: one\n\n"


def _chunks(start_response: Callable[..., Any]) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    for number in range(4):
        yield f"chunk {number}\n".encode()
        time.sleep(0.5)
