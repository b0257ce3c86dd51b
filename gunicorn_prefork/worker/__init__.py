"""What runs in a worker process: Gunicorn's gevent worker serving one slot.

=====================  ==============================================================
:mod:`.slot_worker`    :class:`SlotWorker`: the worker's life (serve, announce leaving,
                       drain, stop), over Gunicorn's gevent worker
:mod:`.slot_server`    the gevent server per listening socket of the slot
:mod:`.rescue_inbox`   connections the master moved here (the rescue channel)
:mod:`.request_wait`   the ``keepalive`` wait that never cuts an arrived request
:mod:`.loop_turn`      how long the event loop's current turn has run (when to yield)
:mod:`.shedding`       ending keep-alive connections over the master's cap
:mod:`.coalesce`       one send for a response's headers and first body write
:mod:`.date_cache`     one ``Date:`` string per second
=====================  ==============================================================

Nothing here imports :mod:`gunicorn_prefork.master` (nor the package root); what both
sides share is in :mod:`gunicorn_prefork.fork`, :mod:`gunicorn_prefork.config` and the
boundary :mod:`gunicorn_prefork._gunicorn`. The one exception is 0.1's name of the
worker class, ``gunicorn_prefork.worker.Worker``: resolved on first use from
:mod:`gunicorn_prefork.worker_class`, where the class is defined.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # ``worker_class = "gunicorn_prefork.worker.Worker"`` named a module in 0.1
    if name == "Worker":
        from ..worker_class import Worker

        return Worker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
