"""Test WSGI app: names the serving worker, can sleep, spin (CPU-bound), crash, stream or report
is_child()."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import gunicorn_prefork


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path.startswith("/sleep"):
        time.sleep(float(environ.get("QUERY_STRING") or 0.1))
    if path == "/crash":
        os._exit(1)
    if path == "/spin":  # CPU-bound: the worker's event loop cannot run meanwhile
        end = time.monotonic() + float(environ.get("QUERY_STRING") or 1)
        while time.monotonic() < end:
            pass
    if path == "/stream":  # headers first, then 5 chunks 50 ms apart (chunked)
        return _stream(start_response, int(environ.get("QUERY_STRING") or 100))
    if path == "/is_child":
        body = str(gunicorn_prefork.is_child()).encode()
    else:
        body = f"worker {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body))),
                              ("X-Worker-Pid", str(os.getpid()))])
    return [body]


def _stream(start_response: Callable[..., Any], size: int) -> Iterable[bytes]:
    """``/stream?SIZE``: 5 chunks of SIZE bytes."""
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("X-Worker-Pid", str(os.getpid()))])
    yield b""
    for _ in range(5):
        time.sleep(0.05)  # cooperative in the gevent worker
        yield b"x" * size


def blocking_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """``/block?S`` holds the gevent hub for S seconds: the worker stops notifying."""
    if environ.get("PATH_INFO") == "/block":
        end = time.monotonic() + float(environ.get("QUERY_STRING") or 5)
        while time.monotonic() < end:
            pass
    return app(environ, start_response)
