"""What the prefork master's log says about its stall watch (issue 10's counts).

The master logs one summary line when it exits::

    prefork: stall watch: 3 stall(s) of slots seen, 41 queued connection(s) moved ...

The tools report both numbers for our runs: the seed and lifecycle runs should see
no stall at all (no false alarms), the stall tool's runs show the rescue at work.
"""

from __future__ import annotations

import re

_SUMMARY = re.compile(r"stall watch: (\d+) stall\(s\) of slots seen"
                      r"(?:, (\d+) queued connection\(s\) moved)?")


def stall_summary(text: str) -> tuple[int, int] | None:
    """(stalls, moved connections) from the master's exit line; None without one
    (not our worker, the watch off, or the master did not exit cleanly)."""
    found = _SUMMARY.findall(text)
    if not found:
        return None
    return (sum(int(stalls) for stalls, _ in found),
            sum(int(moved or 0) for _, moved in found))
