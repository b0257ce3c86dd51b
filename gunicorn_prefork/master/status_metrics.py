"""``GET /metrics``: one :class:`~.status_view.ServerView` in Prometheus' text format.

The names are an interface (dashboards and alerts depend on them): a family is
added, never renamed; docs/scaling-out.md lists them. Written by hand (format 0.0.4:
``# HELP``, ``# TYPE``, one sample per line) so the package needs no dependency;
the tests parse the output with ``prometheus_client``'s own parser.

Invariants: every family is present in every answer (a server with no slot yet
gives its per-slot families without samples); label values are slot numbers only;
output is ASCII.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from importlib import metadata

import gunicorn

from .status_view import ServerView, SlotView, readiness

PREFIX = "gunicorn_prefork_"

#: per-slot families: (name, type, help, value)
_SLOT_FAMILIES: tuple[tuple[str, str, str, Callable[[SlotView], int]], ...] = (
    ("slot_queued", "gauge",
     "Connections waiting in the slot's accept queue.", lambda s: s.queued),
    ("slot_held", "gauge",
     "Connections the slot's worker holds (keep-alive ones included).", lambda s: s.held),
    ("slot_accepted_total", "counter",
     "Connections the slot's workers took on.", lambda s: s.accepted),
    ("slot_shed_total", "counter",
     "Keep-alive connections the slot's workers ended to rebalance.", lambda s: s.shed),
    ("slot_stalled", "gauge",
     "1 while the slot's worker takes none of its queued connections.",
     lambda s: int(s.stalled)),
    ("slot_serving", "gauge",
     "1 while a booted worker serves the slot and it takes new connections.",
     lambda s: int(s.booted and s.serving and not s.draining)),
)

#: server-wide counters: (name, key in ServerView.counters, help)
_COUNTERS: tuple[tuple[str, str, str], ...] = (
    ("stalls_total", "stalls", "Stalls of slots the stall watch saw."),
    ("moved_total", "moved",
     "Queued connections moved to other workers (off stalled or unserved slots)."),
    ("handed_back_total", "handed_back",
     "Connections stuck workers handed back (not started on) and the master passed on."),
    ("shed_total", "shed", "Keep-alive connections ended to rebalance workers."),
    ("worker_crashes_total", "crashes",
     "Worker exits counted as crashes (prefork_recover_threshold)."),
    ("recycles_total", "recycles",
     "Workers that left on their own (max_requests) and handed their slot over."),
)


@lru_cache(maxsize=1)
def _version() -> str:
    try:
        return metadata.version("gunicorn-prefork")
    except metadata.PackageNotFoundError:  # run from a source tree
        return "unknown"


def _family(lines: list[str], name: str, kind: str, text: str) -> None:
    lines.append(f"# HELP {PREFIX}{name} {text}")
    lines.append(f"# TYPE {PREFIX}{name} {kind}")


def render(view: ServerView) -> str:
    """The whole answer's body."""
    lines: list[str] = []
    for name, kind, text, value in _SLOT_FAMILIES:
        _family(lines, name, kind, text)
        lines.extend(f'{PREFIX}{name}{{slot="{slot.number}"}} {value(slot)}'
                     for slot in view.slots)
    for name, key, text in _COUNTERS:
        _family(lines, name, "counter", text)
        lines.append(f"{PREFIX}{name} {view.counters.get(key, 0)}")
    gauges = (
        ("workers", "Worker processes alive.", view.workers),
        ("workers_target", "Workers Gunicorn keeps (-w, TTIN/TTOU).", view.target_workers),
        ("slots", "Per-worker listening slots.", len(view.slots)),
        ("worker_connections", "Connections one worker may hold (worker_connections).",
         view.places or 0),
        ("ready", "1 while GET /ready answers 200.", int(readiness(view)[0])),
        ("stopping", "1 once the master began to stop or halt.",
         int(view.stopping or view.halting)),
    )
    for name, text, number in gauges:
        _family(lines, name, "gauge", text)
        lines.append(f"{PREFIX}{name} {number}")
    _family(lines, "info", "gauge", "The plugin's and Gunicorn's versions.")
    lines.append(f'{PREFIX}info{{version="{_version()}",gunicorn="{gunicorn.__version__}"}} 1')
    return "\n".join(lines) + "\n"
