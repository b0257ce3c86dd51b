"""A worker leaving on its own tells the master, so its slot is handed over.

Gunicorn's master learns that a worker leaves only when it has exited. A worker that
reached ``max_requests`` (or got a TERM or QUIT from someone else than the master)
would stop accepting, finish its requests and exit, and only then would its
replacement be forked and boot: all that time new connections keep arriving in its
slot's queue and wait. With one shared socket other workers would take them; with a
socket per worker they stall.

So the worker announces it is leaving, the moment Gunicorn's ``alive`` flag turns
false, through the heartbeat file Gunicorn already shares between worker and master
(``worker.tmp``): it sets the file's size, which nothing else uses (Gunicorn only
touches its times). The master forks a replacement for the slot at once and steers
new connections to the other slots until it serves (see
:meth:`gunicorn_prefork.master.coordinator.Master.start_handovers`).

The master looks at its workers once per turn of its loop, which sleeps up to a
second. A worker that has something to say (leaving, or serving for the first time)
wakes it with SIGCHLD: every Gunicorn version handles that signal by reaping (here:
nothing) and managing its workers, which is where the plugin looks.
"""

from __future__ import annotations

import os
import signal

#: How long a worker leaving quickly (QUIT) keeps accepting after announcing it (the
#: master, woken at once, steers new connections away well within that).
HANDOFF_SECONDS = 0.1


def wake_master(ppid: int) -> None:
    """Worker side: make the master look at its workers now."""
    try:
        os.kill(ppid, signal.SIGCHLD)
    except OSError:
        pass


def announce(heartbeat_fd: int | None, ppid: int) -> None:
    """Worker side: mark the heartbeat file (its size becomes 1), wake the master."""
    if heartbeat_fd is None:
        return
    try:
        os.ftruncate(heartbeat_fd, 1)
    except OSError:
        return
    wake_master(ppid)


def announced(heartbeat_fd: int | None) -> bool:
    """Master side: has this worker said it is leaving?"""
    if heartbeat_fd is None:
        return False
    try:
        return os.fstat(heartbeat_fd).st_size > 0
    except OSError:
        return False
