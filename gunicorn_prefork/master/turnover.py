"""Are the connections short? How fast they come and go, against how many are held.

Weighing slots by the connections they hold pays off when connections stay (keep-alive
clients, a load balancer's pool): a slot's count then means something for seconds.
Short connections (one request each) come and go thousands of times a second; their
counts are noise by the time a table built from them is attached, and steering by
them cost a quarter of the throughput of the kernel's plain hash (``ab -c64``, 2
workers: 0.93x ``-k gevent`` against 1.23x; 2026-12-07). So the steering weighs slots
only while connections stay: fewer taken per second than :data:`LIMIT` times those
held.

Invariants: pure (the caller gives the clock and the counters); the answer changes at
most once per :data:`WINDOW`; before the first window has passed, connections count
as staying (a burst of new keep-alive connections is weighed at once).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Seconds over which the rate of new connections is measured.
WINDOW = 0.5
#: Connections taken per second, per connection held, above which they are short.
LIMIT = 4.0


@dataclass
class Turnover:
    """Feed it the taken and held totals at each look; :attr:`short` says."""

    short: bool = False
    _since: float | None = None
    _taken: int = 0

    def update(self, now: float, taken: int, held: int) -> bool:
        """``taken``: connections taken on so far (all slots); ``held``: held now."""
        if self._since is None or taken < self._taken:  # first look, or a new table
            self._since, self._taken = now, taken
            return self.short
        elapsed = now - self._since
        if elapsed >= WINDOW:
            rate = (taken - self._taken) / elapsed
            self.short = rate > LIMIT * max(held, 1)
            self._since, self._taken = now, taken
        return self.short
