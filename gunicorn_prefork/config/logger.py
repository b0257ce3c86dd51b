"""The one logger every message of the plugin goes through (fasthttp's ``Logger``).

By default that is Gunicorn's error log, so ``--log-level``, ``--error-logfile``,
syslog and ``logconfig_dict`` apply. ``prefork_logger`` may name another object with
``debug/info/warning/error(msg, *args)``; a stdlib ``logging.Logger`` qualifies.
"""

from __future__ import annotations

import importlib
from typing import Protocol, runtime_checkable

PREFIX = "prefork: "
_METHODS = ("debug", "info", "warning", "error")


@runtime_checkable
class LoggerLike(Protocol):
    """What ``prefork_logger`` must provide (``logging.Logger`` does)."""

    def debug(self, msg: str, *args: object) -> None: ...
    def info(self, msg: str, *args: object) -> None: ...
    def warning(self, msg: str, *args: object) -> None: ...
    def error(self, msg: str, *args: object) -> None: ...


def import_path(path: str, example: str = "package.module.logger") -> object:
    """``package.module.name`` or ``package.module:name`` to the object it names;
    ``example`` shows the expected shape in the error."""
    module_name, sep, attr = path.strip().replace(":", ".").rpartition(".")
    if not sep or not module_name or not attr:
        raise ValueError(f"{path!r} is not a dotted path like {example!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None


def resolve_logger(value: object) -> LoggerLike:
    """Turn a ``prefork_logger`` value (object or dotted path) into a logger."""
    target = import_path(value) if isinstance(value, str) else value
    missing = [name for name in _METHODS if not callable(getattr(target, name, None))]
    if missing:
        raise ValueError(f"a logger needs callable {'/'.join(_METHODS)}; "
                         f"missing {', '.join(missing)}")
    assert isinstance(target, LoggerLike)
    return target


class PluginLog:
    """Prefixes the plugin's messages and sends them to the configured target."""

    def __init__(self, target: LoggerLike) -> None:
        self.target = target

    def debug(self, msg: str, *args: object) -> None:
        self.target.debug(PREFIX + msg, *args)

    def info(self, msg: str, *args: object) -> None:
        self.target.info(PREFIX + msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        self.target.warning(PREFIX + msg, *args)

    def error(self, msg: str, *args: object) -> None:
        self.target.error(PREFIX + msg, *args)
