"""One ``Date:`` header string per second instead of one per response.

Gunicorn formats the current time with ``email.utils.formatdate`` for every
response (about 3.5 % of a worker's CPU on hello world). The header has a
resolution of one second, so a worker formats it once per second. Installed in the
worker process only, where ``gunicorn.http.wsgi`` looks ``util.http_date`` up at
every call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .. import _gunicorn

_original: Callable[..., str] = _gunicorn.http_date
_cache: tuple[int, str] = (-1, "")


def http_date(timestamp: float | None = None) -> str:
    """``gunicorn.util.http_date`` with the current second's string kept."""
    global _cache
    if timestamp is not None:
        return _original(timestamp)
    second = int(time.time())
    if _cache[0] != second:
        _cache = (second, _original(second))
    return _cache[1]


def install() -> None:
    _gunicorn.install_http_date(http_date)
