"""``gunicorn_prefork.Worker``: the class ``-k gunicorn_prefork.Worker`` loads.

Gunicorn loads the worker class in the master too and calls its ``setup()`` there,
before the first fork (every version from 20.1): that call installs the master side
(:mod:`gunicorn_prefork.master.arbiter_hook`). In each worker the class is the
worker side (:class:`gunicorn_prefork.worker.slot_worker.SlotWorker`). This is the
one module that imports both sides; neither side imports the other.
"""

from __future__ import annotations

from .master import arbiter_hook
from .worker.slot_worker import SlotWorker


class Worker(SlotWorker):
    """Gunicorn's gevent worker on its own SO_REUSEPORT socket, with the master side.

    Select it with ``-k gunicorn_prefork.Worker`` or
    ``worker_class = "gunicorn_prefork.Worker"``.
    """

    #: Marks the worker classes the master side acts for.
    gunicorn_prefork = True

    @classmethod
    def setup(cls) -> None:
        """Called by Gunicorn in the master each time it loads the worker class."""
        arbiter_hook.install()
