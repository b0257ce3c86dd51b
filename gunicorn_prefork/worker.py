"""``gunicorn_prefork.Worker``: Gunicorn's gevent worker on its own SO_REUSEPORT socket.

By the time a worker runs, the master has given it one slot's sockets and the other
slots' descriptors are closed (see :mod:`gunicorn_prefork.master`), so the gevent
worker serves only its own listeners and everything else of Gunicorn (access log,
limits, TLS, ``worker_connections``, ``graceful_timeout``) behaves as users know it.
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

from gunicorn.workers.ggevent import GeventWorker

from . import arbiter_hook


def _leave(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


class Worker(GeventWorker):  # type: ignore[misc]
    """Gunicorn's gevent worker serving only its own slot's sockets.

    Select it with ``-k gunicorn_prefork.Worker`` or
    ``worker_class = "gunicorn_prefork.Worker"``.
    """

    #: Marks the worker classes the master-side plugin acts for.
    gunicorn_prefork = True

    @classmethod
    def setup(cls) -> None:
        """Called by Gunicorn in the master each time it loads the worker class."""
        arbiter_hook.install()

    def init_process(self) -> None:
        self._wait_recover_interval()
        super().init_process()

    def _wait_recover_interval(self) -> None:
        """A crashed worker's replacement waits ``prefork_recover_interval`` here.

        The master is never blocked: it forked us at once. While waiting we keep
        notifying (so the master's timeout does not kill us) and leave at once on
        the signals with which the master stops workers.
        """
        master = arbiter_hook.current
        if master is None or master.spawn_delay <= 0:
            return
        delay = master.spawn_delay
        for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
            signal.signal(sig, _leave)
        master.log.info("worker %s waits %.1fs before booting (prefork_recover_interval)",
                        self.pid, delay)
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            self.tmp.notify()
            time.sleep(min(left, 1.0))
