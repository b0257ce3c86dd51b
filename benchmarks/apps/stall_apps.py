"""App for ``benchmarks/stall.py``: short cooperative requests, and a CPU-bound one.

``/block`` spins 100 ms with ``time.perf_counter()`` without yielding to gevent (the
worker's event loop stalls meanwhile); every other path waits 2 ms cooperatively
(``time.sleep`` is patched by gevent).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

BLOCK_SECONDS = 0.1


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/block":
        end = time.perf_counter() + BLOCK_SECONDS
        while time.perf_counter() < end:
            pass
    else:
        time.sleep(0.002)
    body = b"ok\n"
    start_response("200 OK", [("Content-Length", str(len(body))),
                              ("X-Worker-Pid", str(os.getpid()))])
    return [body]
