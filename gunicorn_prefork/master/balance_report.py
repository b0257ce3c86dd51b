"""What the master's exit summary says of how evenly its slots took connections.

Pure policy: from the connections each slot's workers took on (the shared page's
*taken* counts, :mod:`gunicorn_prefork.fork.progress`) to one log line, or nothing
when there is nothing to compare (fewer than two slots, or no connection taken).
The line names every slot up to :data:`LIST_UP_TO` of them, and only the fewest,
the most and the mean beyond.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Slots named one by one in the line; beyond, only the fewest, most and mean.
LIST_UP_TO = 8


def balance_line(taken: Mapping[int, int]) -> str | None:
    """``taken``: slot number -> connections taken on; None when nothing to say."""
    if len(taken) < 2 or not any(taken.values()):
        return None
    fewest, most = min(taken.values()), max(taken.values())
    ratio = f"most/fewest {most / fewest:.2f}" if fewest else "a slot took none"
    if len(taken) <= LIST_UP_TO:
        counts = ", ".join(f"slot {number}: {count:,}"
                           for number, count in sorted(taken.items()))
    else:
        mean = sum(taken.values()) / len(taken)
        counts = f"{len(taken)} slots, fewest {fewest:,}, most {most:,}, mean {mean:,.0f}"
    return f"connections taken per slot: {counts} ({ratio})"
