"""Error types and the master's exit statuses.

Start-up errors follow Gunicorn's own convention: one ``Error: ...`` line and exit
status 1, the status Gunicorn uses when it cannot load its configuration or bind.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

#: A ``prefork_*`` setting is invalid, or the listeners cannot be created
#: (port in use, a ``unix:`` bind with reuseport, no SO_REUSEPORT on this platform).
EXIT_STARTUP_ERROR = 1

#: Workers crashed more than ``prefork_recover_threshold`` times within the window
#: (fasthttp's ``ErrOverRecovery``). Not Gunicorn's 1, 3 or 4: put it in systemd's
#: ``RestartPreventExitStatus=`` to stop a restart loop there too.
EXIT_OVER_RECOVERY = 5


class PreforkError(Exception):
    """Base class of every error the plugin raises on purpose."""


class SettingError(PreforkError):
    """A ``prefork_*`` setting has a value the plugin cannot use."""

    def __init__(self, name: str, value: object, expected: str, source: str) -> None:
        self.name = name
        self.value = value
        self.source = source
        super().__init__(f"invalid {name} = {value!r} (from {source}): {expected}")


class StartupError(PreforkError):
    """The listeners cannot be set up as configured; the message names the fix."""


class OverRecoveryError(PreforkError):
    """fasthttp's ``ErrOverRecovery``: workers crashed more often than allowed.

    The master reports it as one error line and exits with :data:`EXIT_OVER_RECOVERY`.
    """

    exit_status = EXIT_OVER_RECOVERY


def fail_startup(log: Any, cfg: Any, error: PreforkError) -> NoReturn:
    """One clear line, Gunicorn's start-up exit status, no traceback."""
    log.error("Error: %s", error)
    if getattr(cfg, "errorlog", "-") != "-":
        print(f"Error: {error}", file=sys.stderr, flush=True)
    sys.exit(EXIT_STARTUP_ERROR)
