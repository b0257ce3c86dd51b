"""Gunicorn's own loop keeps its timing with the plugin's stall watch on (issue 19).

The watch once ran from a SIGALRM timer in the master's main thread; on some
interpreter builds (pyenv's 3.10-3.12) a timed lock wait that signal handlers keep
interrupting never times out, and Gunicorn 24+ waits for its next loop turn with
``SimpleQueue.get(timeout=1.0)``. Everything Gunicorn does from that loop was then
late for as long as nothing else woke the master: a stuck worker was never killed
at ``timeout``, a USR2 master never promoted. These tests do what an operator does
and check Gunicorn's duties happen (``-k gevent`` passes them too).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.server import free_port, request, running, wait_for

PREFORK = 'worker_class = "gunicorn_prefork.Worker"\n'
IDLE_SECONDS = 30  # as long as the issue asks for


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_stuck_worker_is_killed_at_timeout_after_an_idle_spell(tmp_path: Path) -> None:
    """(``-k gevent`` passes it too: the closing note of issue 19 has the runs.)"""
    port = free_port()
    config = PREFORK + (f'bind = "127.0.0.1:{port}"\nworkers = 2\ntimeout = 3\n'
                       'loglevel = "info"\n')
    with running(tmp_path, config=config, app="app:blocking_app") as server:
        wait_for(lambda: len({request("127.0.0.1", port)[1]["x-worker-pid"]
                              for _ in range(20)}) == 2, what="both workers serving")
        time.sleep(IDLE_SECONDS)  # an idle master: nothing wakes its loop but its timeout
        try:
            status = request("127.0.0.1", port, "/block", timeout=30)[0]
        except OSError:  # killed: the connection ends without an answer
            status = 0
        # Gunicorn kills it 3-4 s into its 12 s spin; a late master lets it answer
        assert status != 200, server.log()
        wait_for(lambda: "WORKER TIMEOUT" in server.log(), what="the timeout logged")


def test_usr2_then_term_of_the_old_master_promotes_the_new_one_every_time(
        tmp_path: Path) -> None:
    port = free_port()
    pidfile = tmp_path / "gunicorn.pid"
    config = PREFORK + (f'bind = "127.0.0.1:{port}"\nworkers = 2\n'
                        f'pidfile = "{pidfile}"\nloglevel = "info"\n')
    with running(tmp_path, config=config) as server:
        server.wait_serving(port, 2)
        master = server.pid
        for round_ in range(10):
            os.kill(master, signal.SIGUSR2)
            second = Path(f"{pidfile}.2")
            wait_for(lambda s=second: s.exists() and s.read_text().strip() != "",
                     what=f"round {round_}: the new master's pidfile")
            new = int(second.read_text())
            wait_for(lambda: request("127.0.0.1", port)[0] == 200, what="serving")
            time.sleep(1.5)  # its workers boot
            os.kill(master, signal.SIGTERM)
            wait_for(lambda old=master: not _alive(old) or _zombie(old), timeout=30,
                     what=f"round {round_}: the old master {master} gone")
            wait_for(lambda n=new: pidfile.exists() and pidfile.read_text().strip() == str(n),
                     timeout=10, what=f"round {round_}: master {new} promoted")
            master = new
        assert server.log().count("Master has been promoted.") == 10
        assert request("127.0.0.1", port)[0] == 200
        os.kill(master, signal.SIGTERM)
        wait_for(lambda: not _alive(master), timeout=30, what="the last master gone")


def _zombie(pid: int) -> bool:
    """The first master is our child: once it exits it stays a zombie until reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"
