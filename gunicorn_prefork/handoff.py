"""A worker leaving on its own tells the master, so its slot gets no new connections.

Gunicorn's master learns that a worker leaves only when it has exited. A worker that
reached ``max_requests`` stops accepting (its gevent loop notices within a second),
finishes its requests, exits, and its replacement still has to boot: all that time
new connections keep arriving in its slot's queue and wait. With one shared socket
other workers would take them; with a socket per worker they stall.

So the worker announces it is leaving through the heartbeat file Gunicorn already
shares between worker and master (``worker.tmp``): it sets the file's size, which
nothing else uses (Gunicorn only touches its times). The master steers new
connections away from the slot at once; the worker accepts for
:data:`HANDOFF_SECONDS` more (what was already on its way), finishes its requests
and exits without waiting for its loop's next tick. Whatever still lands in the
slot's queue waits there, held by the master, for the replacement.

The master looks at its workers once per turn of its loop, which sleeps up to a
second. A worker that has something to say (leaving, or serving for the first time)
wakes it with SIGCHLD: every Gunicorn version handles that signal by reaping (here:
nothing) and managing its workers, which is where the plugin looks.
"""

from __future__ import annotations

import os
import signal
from typing import Any

#: How long a leaving worker keeps accepting after announcing it (the master,
#: woken at once, steers new connections away well within that).
HANDOFF_SECONDS = 0.1


def wake_master(ppid: int) -> None:
    """Worker side: make the master look at its workers now."""
    try:
        os.kill(ppid, signal.SIGCHLD)
    except OSError:
        pass


def announce(tmp: Any, ppid: int) -> None:
    """Worker side: mark the heartbeat file (its size becomes 1), wake the master."""
    os.ftruncate(tmp.fileno(), 1)
    wake_master(ppid)


def announced(tmp: Any) -> bool:
    """Master side: has this worker said it is leaving?"""
    try:
        return os.fstat(tmp.fileno()).st_size > 0
    except (AttributeError, OSError, ValueError):
        return False
