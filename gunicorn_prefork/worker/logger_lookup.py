"""``logging.getLogger`` for Gunicorn's environ, looked up once per name.

Gunicorn builds a new ``wsgi.errors`` stream for every request, and each one asks
``logging.getLogger("gunicorn.error")`` for its handlers: the logging module's lock,
its manager's dict, 2 to 3 % of a worker's CPU on hello world. The logging module
returns the same ``Logger`` object for a name every time it is asked, so the answer
can be kept. :func:`install` gives ``gunicorn.http.wsgi`` (its module global
``logging``, in the worker process only) a stand-in that keeps it; every other
name is the logging module's own.

Invariants: the stream is still built for every request, from the logger's
handlers as they are then (a ``USR1`` reopening the log files is seen at once);
only the logger object, which never changes for a name, is kept.
"""

from __future__ import annotations

import logging
import types
from typing import Any

from .. import _gunicorn


class RememberingLogging(types.ModuleType):
    """The ``logging`` module, with ``getLogger(name)`` answered once per name."""

    def __init__(self) -> None:
        super().__init__("logging")
        self._loggers: dict[str, logging.Logger] = {}

    def getLogger(self, name: str | None = None) -> logging.Logger:
        if name is None:
            return logging.getLogger()
        logger = self._loggers.get(name)
        if logger is None:
            logger = self._loggers[name] = logging.getLogger(name)
        return logger

    def __getattr__(self, name: str) -> Any:
        return getattr(logging, name)


def install() -> None:
    """In a worker process."""
    _gunicorn.install_wsgi_logging(RememberingLogging())
