"""What the prefork master's log says about its stall watch (issue 10's counts).

The master logs one summary line when it exits::

    prefork: stall watch: 3 stall(s) of slots seen, 41 queued connection(s) moved ...

and, when the machine kept a worker off its CPU past the threshold, one more::

    prefork: stall watch: 12 wait(s) past the threshold were a worker waiting for a CPU, ...

The tools report the numbers for our runs: the seed and lifecycle runs should see
no stall at all (no false alarms), the stall tool's runs show the rescue at work.
"""

from __future__ import annotations

import re

_SUMMARY = re.compile(r"stall watch: (\d+) stall\(s\) of slots seen"
                      r"(?:[,;] (\d+) queued connection\(s\) moved)?")


_CPU_WAITS = re.compile(r"stall watch: (\d+) wait\(s\) past the threshold were a worker "
                        r"waiting for a CPU")


def cpu_waits(text: str) -> int:
    """How often the watch did not take a wait for a stall because the worker was
    waiting for a CPU (0 without the line)."""
    return sum(int(n) for n in _CPU_WAITS.findall(text))


def stall_summary(text: str) -> tuple[int, int] | None:
    """(stalls, moved connections) from the master's exit line; None without one
    (not our worker, the watch off, or the master did not exit cleanly)."""
    found = _SUMMARY.findall(text)
    if not found:
        return None
    return (sum(int(stalls) for stalls, _ in found),
            sum(int(moved or 0) for _, moved in found))
