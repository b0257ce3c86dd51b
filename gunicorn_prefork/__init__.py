"""gunicorn-prefork: fasthttp's prefork for Gunicorn.

``gunicorn -k gunicorn_prefork.Worker -w 4 app:app`` gives every worker its own
SO_REUSEPORT listening socket, owned and kept by the master.

``Worker`` is imported on first use (it imports gevent): the start-up hook imports
:mod:`gunicorn_prefork.config.tooling` in every process that imports Gunicorn's
application module, whatever its worker class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config.logger import LoggerLike
from .errors import (
    EXIT_OVER_RECOVERY,
    EXIT_STARTUP_ERROR,
    OverRecoveryError,
    PreforkError,
    SettingError,
    StartupError,
)
from .fork.child import is_child

if TYPE_CHECKING:
    from .worker_class import Worker

__all__ = [
    "EXIT_OVER_RECOVERY",
    "EXIT_STARTUP_ERROR",
    "LoggerLike",
    "OverRecoveryError",
    "PreforkError",
    "SettingError",
    "StartupError",
    "Worker",
    "is_child",
]
__version__ = "0.2.0.dev0"


def __getattr__(name: str) -> Any:
    if name == "Worker":
        from .worker_class import Worker

        return Worker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
