"""Keep-alive rebalancing, the master's part: which workers end keep-alive
connections, and how many they ended.

New connections go where the fewest are held (:mod:`.steering`), but keep-alive
connections a burst left on one worker stay there. From its main loop (about once a
second) the master reads what each slot's worker holds, and writes a *cap* for each
slot into the shared page (:func:`~.steering_program.caps`: a slot holding three or
more over the fewest ends what it holds above the mean, at most 16 per look); the
worker ends keep-alive connections gracefully while it holds more than its cap
(:mod:`gunicorn_prefork.worker.shedding`), and counts them in the page.

Invariants: only slots that take connections now (serving, booted, not stalled,
draining or stranded) share and shed; with ``prefork_load_aware = False`` every cap
is 0; runs under the steering lock.
"""

from __future__ import annotations

from typing import Any

from ..fork.progress import ProgressPage
from . import steering_program


class Rebalancing:
    """Caps written, connections shed counted."""

    def __init__(self, page: ProgressPage) -> None:
        self._page = page
        self.enabled = True
        #: keep-alive connections workers ended to rebalance, since the start
        self.shed = 0
        self._seen: dict[int, int] = {}  # progress index -> its shed counter last seen

    def update(self, group: steering_program.Group | None,
               stalled: frozenset[int]) -> int:
        """Write every slot's cap; returns how many connections were shed since the
        last call."""
        if group is None:
            return 0
        indices = {index: watched.progress for index, watched in enumerate(group.watched)
                   if watched.progress is not None}
        held = {index: self._page.held(progress) for index, progress in indices.items()}
        caps = (steering_program.caps(held, set(group.takers(stalled))) if self.enabled
                else dict.fromkeys(held, 0))
        for index, progress in indices.items():
            self._page.set_cap(progress, caps[index])
        return self._count(indices.values())

    def _count(self, progress_indices: Any) -> int:
        new = 0
        for progress in progress_indices:
            total = self._page.shed(progress)
            new += max(0, total - self._seen.get(progress, 0))
            self._seen[progress] = total
        self.shed += new
        return new
