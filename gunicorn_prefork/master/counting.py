"""What the master counts (crashes, recycles, stalls, moved and shed connections):
kept for the status endpoint's ``/metrics``, and sent to statsd when Gunicorn's
statsd logger is active (``--statsd-host``), under the same names.

Invariants: counts only grow; a count of 0 changes nothing; only the master's main
loop counts (the status thread only reads :attr:`Counts.counted`).
"""

from __future__ import annotations

from typing import Any


class Counts:
    """``counts(name, n)``: count ``n`` more of ``name`` (a statsd name)."""

    def __init__(self, server: Any) -> None:
        self._server = server
        #: every count since the start, by statsd name
        self.counted: dict[str, int] = {}

    def __call__(self, name: str, count: int = 1) -> None:
        if not count:
            return
        self.counted[name] = self.counted.get(name, 0) + count
        increment = getattr(self._server.log, "increment", None)
        if callable(increment):
            increment(name, count)

    def get(self, name: str) -> int:
        return self.counted.get(name, 0)
