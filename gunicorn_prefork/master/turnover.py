"""Are the connections short? How fast they end, against how many are held.

Weighing slots by the connections they hold pays off when connections stay (keep-alive
clients, a load balancer's pool): a slot's count then means something for seconds.
Short connections (one request each) come and go thousands of times a second; their
counts are noise by the time a table built from them is attached, and steering by
them cost a quarter of the throughput of the kernel's plain hash (``ab -c64``, 2
workers: 0.93x ``-k gevent`` against 1.23x; 2026-12-07). So the steering weighs slots
only while connections stay: fewer end per second than :data:`LIMIT` times those
held (at least :data:`FLOOR`). Ended, not taken: keep-alive connections opened in
quick succession are taken fast, and stay.

Invariants: pure (the caller gives the clock and the counters); the answer changes at
most once per :data:`WINDOW`; before the first window has passed, connections count
as staying (a burst of new keep-alive connections is weighed at once).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Seconds over which the rate of new connections is measured.
WINDOW = 0.5
#: Connections ended per second, per connection held (at least :data:`FLOOR`), above
#: which they are short: ``ab -c64`` ends about 200 per held one a second; health
#: checks and a few short requests beside kept connections end far fewer.
LIMIT = 20.0
FLOOR = 4


@dataclass
class Turnover:
    """Feed it the taken and held totals at each look; :attr:`short` says."""

    short: bool = False
    _since: float | None = None
    _ended: int = 0

    def update(self, now: float, taken: int, held: int) -> bool:
        """``taken``: connections taken on so far (all slots); ``held``: held now."""
        ended = taken - held
        if self._since is None or ended < self._ended:  # first look, or a new table
            self._since, self._ended = now, ended
            return self.short
        elapsed = now - self._since
        if elapsed >= WINDOW:
            rate = (ended - self._ended) / elapsed
            self.short = rate > LIMIT * max(held, FLOOR)
            self._since, self._ended = now, ended
        return self.short
