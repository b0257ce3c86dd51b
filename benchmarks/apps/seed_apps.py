"""WSGI apps for ``benchmarks/seed.py``.

``sleep_app`` is the handler of fasthttp's prefork benchmark (sleep 100 ms, empty 200
response; under gevent ``time.sleep`` is patched and yields to the hub). ``hello_app``
answers ``Hello, World!`` at once. ``json_app`` is a JSON API's handler: it parses the
query string, builds a list of 20 records and answers it as about 2 KB of JSON with a
few headers.

Both count the requests they serve in an in-memory counter of the serving process and
nothing else on the hot path. ``GET /__count`` answers ``<pid> <count>`` without
counting itself, so the runner can collect every worker's count after a load run over
fresh connections.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

StartResponse = Callable[..., Any]

COUNT_PATH = "/__count"
HELLO = b"Hello, World!"
_HELLO_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", str(len(HELLO)))]
_EMPTY_HEADERS = [("Content-Length", "0")]

# [pid, count]. The pid check makes the count per process even with --preload.
# Under gevent, greenlets do not preempt each other between the read and the write;
# under a threaded server (granian) a rare lost increment is acceptable here.
_state = [0, 0]


def _count() -> None:
    pid = os.getpid()
    if _state[0] != pid:
        _state[0] = pid
        _state[1] = 0
    _state[1] += 1


def _report(start_response: StartResponse) -> Iterable[bytes]:
    pid = os.getpid()
    count = _state[1] if _state[0] == pid else 0
    body = f"{pid} {count}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def sleep_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == COUNT_PATH:
        return _report(start_response)
    _count()
    time.sleep(0.1)
    start_response("200 OK", list(_EMPTY_HEADERS))
    return [b""]


def hello_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == COUNT_PATH:
        return _report(start_response)
    _count()
    start_response("200 OK", list(_HELLO_HEADERS))
    return [HELLO]


def json_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == COUNT_PATH:
        return _report(start_response)
    _count()
    query = parse_qs(environ.get("QUERY_STRING", ""))
    page = int(query.get("page", ["1"])[0])
    items = [{"id": page * 100 + n, "name": f"item {n}", "price": n * 1.25,
              "tags": ["alpha", "beta"], "in_stock": n % 3 != 0} for n in range(20)]
    body = json.dumps({"page": page, "count": len(items), "items": items}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body))),
                              ("Cache-Control", "no-store"),
                              ("X-Request-Page", str(page))])
    return [body]
