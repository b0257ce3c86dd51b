"""``gunicorn_prefork.Worker``: Gunicorn's gevent worker on its own SO_REUSEPORT socket.

By the time a worker runs, the master has given it one slot's sockets and the other
slots' descriptors are closed (see :mod:`gunicorn_prefork.master`), so the gevent
worker serves only its own listeners and everything else of Gunicorn (access log,
limits, TLS, ``worker_connections``, ``graceful_timeout``) behaves as users know it.
"""

from __future__ import annotations

from gunicorn.workers.ggevent import GeventWorker

from . import arbiter_hook


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
