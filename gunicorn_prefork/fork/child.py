"""Which side of the fork this process is on (fasthttp's ``IsChild``)."""

from __future__ import annotations

_is_child = False


def is_child() -> bool:
    """True inside a worker process forked by a gunicorn-prefork master."""
    return _is_child


def mark_child() -> None:
    """Called in a worker right after the fork, before any user hook runs."""
    global _is_child
    _is_child = True
