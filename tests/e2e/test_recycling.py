"""``max_requests`` recycling keeps its word (issue 26), seen as a user sees it.

Four workers recycle every 100 requests under a load of 16 clients, then the master
gets TERM right after the load, while handovers are still under way:

* the master exits by itself, well before ``graceful_timeout`` (which is set long
  here, so a stop that waits for a message that never comes shows as a wait for
  the SIGKILL), and no worker is killed;
* no worker answers more than ``max_requests`` + the connections it held at the
  limit (at most the client's concurrency);
* never more than two processes per slot (sampled: at most 2 x ``workers``
  children);
* a normal recycle logs no ``was sent SIGTERM!``; nothing is lost.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from tests.load import Load
from tests.server import free_port, running

PREFORK = 'worker_class = "gunicorn_prefork.Worker"\n'
WORKERS = 4
MAX_REQUESTS = 100
CONCURRENCY = 16
#: long enough that a stop which waits for it is told apart from one that does not
GRACEFUL_TIMEOUT = 20


class ChildCount:
    """The most children the master had at once, sampled every few milliseconds."""

    def __init__(self, pid: int) -> None:
        self._path = Path(f"/proc/{pid}/task/{pid}/children")
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ChildCount:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            try:
                self.most = max(self.most, len(self._path.read_text().split()))
            except OSError:
                return


@pytest.mark.parametrize("keepalive", [pytest.param(False, id="close"),
                                       pytest.param(True, id="keepalive")])
def test_a_stop_during_handovers_under_load(tmp_path: Path, keepalive: bool) -> None:
    port = free_port()
    config = (PREFORK + f'bind = "127.0.0.1:{port}"\nworkers = {WORKERS}\n'
              f"max_requests = {MAX_REQUESTS}\ngraceful_timeout = {GRACEFUL_TIMEOUT}\n"
              'loglevel = "info"\nprefork_recover_threshold = 0\n')
    with running(tmp_path, config=config) as server:
        server.wait_serving(port, WORKERS)
        with ChildCount(server.pid) as children:
            load = Load(port, concurrency=CONCURRENCY, keepalive=keepalive).start()
            time.sleep(5)
            result = load.stop()
            server.signal(signal.SIGTERM)
            # a hang lasts GRACEFUL_TIMEOUT and ends with a SIGKILL
            status = server.wait_exit(GRACEFUL_TIMEOUT - 5)
        log = server.log()
    assert status == 0, log
    assert log.count("Autorestarting worker") >= 2 * WORKERS, "too little recycling"
    assert result.lost == 0, result
    most = max(result.workers.values())
    assert most <= MAX_REQUESTS + CONCURRENCY, (most, result.workers)
    assert children.most <= 2 * WORKERS, children.most
    assert "was sent SIGTERM" not in log, log
    assert "SIGKILL" not in log, log
