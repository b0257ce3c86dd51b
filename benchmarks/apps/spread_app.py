"""The app of ``benchmarks/spread.py``: a 2-byte answer that names the serving worker."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Length", "2"), ("X-Worker-Pid", str(os.getpid()))])
    return [b"ok"]
