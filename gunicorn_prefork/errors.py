"""Error types and the master's exit statuses.

Start-up errors follow Gunicorn's own convention: one ``Error: ...`` line and exit
status 1, the status Gunicorn uses when it cannot load its configuration or bind.
"""

from __future__ import annotations

#: A ``prefork_*`` setting is invalid, or the listeners cannot be created
#: (port in use, a ``unix:`` bind with reuseport, no SO_REUSEPORT on this platform).
EXIT_STARTUP_ERROR = 1


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
