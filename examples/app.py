"""A small WSGI app for trying gunicorn-prefork.

Every response names the worker process that served it (``X-Worker-Pid``), so you
can watch the kernel spread connections over the workers' own sockets.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import gunicorn_prefork

StartResponse = Callable[..., Any]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    if path == "/sleep":
        time.sleep(0.1)  # the seed benchmark's handler (cooperative under gevent)
    body = f"hello from worker {os.getpid()} (is_child={gunicorn_prefork.is_child()})\n".encode()
    start_response("200 OK", [
        ("Content-Type", "text/plain"),
        ("Content-Length", str(len(body))),
        ("X-Worker-Pid", str(os.getpid())),
    ])
    return [body]
