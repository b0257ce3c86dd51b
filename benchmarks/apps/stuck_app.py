"""App for ``benchmarks/stuck.py``: fast requests that log their id, and a CPU-bound one.

``/fast?ID`` appends the line ``ID PID`` to the file named by the environment variable
``STUCK_LOG`` (one ``os.write`` on an ``O_APPEND`` descriptor, so lines of both workers
never interleave) and answers at once; ``/spin?SECONDS`` spins with
``time.perf_counter()`` without yielding to gevent (the worker's event loop is stuck
meanwhile) and logs nothing; ``/cspin?SECONDS`` does the same in one C call (hashlib's
PBKDF2, calibrated first), during which not even a Python signal handler runs (Gunicorn's
SIGABRT at ``--timeout`` then waits, so the worker is SIGKILLed); any other path just
answers. Every answer names the worker
in ``X-Worker-Pid``.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

_log_fd: int | None = None


def _log(line: str) -> None:
    global _log_fd
    path = os.environ.get("STUCK_LOG")
    if not path:
        return
    if _log_fd is None:  # opened in the worker: nothing shared with the master's forks
        _log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_log_fd, line.encode())


def _c_spin(seconds: float) -> None:
    start, probe = time.perf_counter(), 20_000
    hashlib.pbkdf2_hmac("sha256", b"stuck", b"salt", probe)
    rate = probe / max(1e-6, time.perf_counter() - start)
    hashlib.pbkdf2_hmac("sha256", b"stuck", b"salt", max(1, int(rate * seconds)))


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path, query = environ.get("PATH_INFO"), environ.get("QUERY_STRING", "")
    if path == "/spin":
        end = time.perf_counter() + float(query or "1")
        while time.perf_counter() < end:
            pass
    elif path == "/cspin":
        _c_spin(float(query or "1"))
    elif path == "/fast" and query:
        _log(f"{query} {os.getpid()}\n")
    body = b"ok\n"
    start_response("200 OK", [("Content-Length", str(len(body))),
                              ("X-Worker-Pid", str(os.getpid()))])
    return [body]
