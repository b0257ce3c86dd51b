"""gunicorn-prefork: fasthttp's prefork for Gunicorn.

``gunicorn -k gunicorn_prefork.Worker -w 4 app:app`` gives every worker its own
SO_REUSEPORT listening socket, owned and kept by the master.
"""

from __future__ import annotations

from .child import is_child
from .errors import (
    EXIT_OVER_RECOVERY,
    EXIT_STARTUP_ERROR,
    OverRecoveryError,
    PreforkError,
    SettingError,
    StartupError,
)
from .plugin_log import LoggerLike
from .worker import Worker

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
__version__ = "0.1.0"
