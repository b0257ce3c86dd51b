"""Each setting's value read once per worker process instead of at every use.

Gunicorn's ``Config`` answers ``cfg.keepalive`` through ``__getattr__``, a dict
lookup and ``Setting.get()``: about 0.4 µs, and a request reads 25 to 30 settings
(the parser's limits, the header policy, the hooks, the access log's checks), about
a tenth of a worker's CPU on hello world. In a worker the settings no longer
change: the master reads them, forks, and a reload (HUP) forks new workers.
:func:`install` turns the worker's ``cfg`` into one that keeps each value it read
as a plain attribute (:func:`.._gunicorn.keep_setting_values`).

Invariants: the worker process only, from ``init_process`` on (after Gunicorn's
``post_fork`` hook); ``cfg.set(name, value)`` still changes a setting there (it
drops the kept value first); a value is the very object ``Setting.get()`` returned,
so what Gunicorn reads is the same, only read once.
"""

from __future__ import annotations

from typing import Any

from .. import _gunicorn


def install(cfg: Any) -> None:
    """In a worker process: ``cfg`` keeps each setting's value once read."""
    _gunicorn.keep_setting_values(cfg)
