"""The ``prefork_*`` settings: where they are read from and how they are checked.

Gunicorn's ``Config()`` copies its list of known settings once, before ``-k`` imports
this package, so on the first run Gunicorn's config loader silently skips our names.
We therefore read them ourselves, in this order (first found wins):

1. the environment: ``GUNICORN_PREFORK_<NAME>`` (``GUNICORN_PREFORK_REUSEPORT=0``);
2. the loaded config: ``gunicorn.conf.py`` / ``-c file`` (``sys.modules['__config__']``)
   or ``-c python:module``;
3. ``cfg.settings`` when the setting is registered there (a custom application that
   imported this package before building its Config, or any run after a HUP);
4. the default.

Every value is validated here; a bad one raises :class:`SettingError` naming the
setting, the value and where it came from. Names that look like ours but are not
(``prefork_recover_threshoId``, ``GUNICORN_PREFORK_REUSEPOR``) are found by
:func:`unknown_names`, each with the closest real name.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import _gunicorn
from ..errors import SettingError
from . import status_bind as status_bind_mod
from . import suggest
from .logger import LoggerLike, import_path, resolve_logger
from .status_bind import StatusAddress

ENV_PREFIX = "GUNICORN_PREFORK_"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class PreforkSettings:
    """The validated ``prefork_*`` values of one configuration load."""

    reuseport: bool = True
    recover_threshold: int = 1
    recover_window: float = 60.0
    recover_interval: float = 0.0
    count_timeouts: bool = False
    stall_threshold: float = 0.01
    load_aware: bool = True
    logger: LoggerLike | None = None
    on_ready: Callable[..., object] | None = None
    on_recover: Callable[..., object] | None = None
    status_bind: StatusAddress | None = None


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("expected True or False (or 1/0, yes/no, on/off)")


def _parse_count(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("expected a whole number >= 0")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError("expected a whole number >= 0") from None
    if not isinstance(value, int) or value < 0:
        raise ValueError("expected a whole number >= 0")
    return value


def _parse_seconds(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds >= 0")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError("expected a number of seconds >= 0") from None
    if not isinstance(value, (int, float)) or value < 0 or value != value:
        raise ValueError("expected a number of seconds >= 0")
    return float(value)


def _parse_logger(value: object) -> LoggerLike | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return resolve_logger(value)


def _hook(*parameters: str) -> Callable[[object], Callable[..., object] | None]:
    """A hook's parser: a function (or a dotted path to one) that can be called with
    ``parameters``, checked here rather than failing when the hook runs."""
    def parse(value: object) -> Callable[..., object] | None:
        if value is None:
            return None
        target = (import_path(value, "package.module.function") if isinstance(value, str)
                  else value)
        if not callable(target):
            raise ValueError("expected a function (or a dotted path to one)")
        try:
            inspect.signature(target).bind(*parameters)
        except TypeError:
            raise ValueError(f"expected a function called as "
                             f"f({', '.join(parameters)})") from None
        except ValueError:  # no signature to read (a builtin): trust it
            pass
        return target
    return parse


@dataclass(frozen=True)
class _Spec:
    name: str
    parse: Callable[[object], Any]
    desc: str

    @property
    def field(self) -> str:
        return self.name[len("prefork_"):]

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.field.upper()


SPECS: tuple[_Spec, ...] = (
    _Spec("prefork_reuseport", _parse_bool,
          "One SO_REUSEPORT listening socket per worker (True) or Gunicorn's shared "
          "socket (False)."),
    _Spec("prefork_recover_threshold", _parse_count,
          "Worker crashes tolerated within prefork_recover_window; 0 = never halt. "
          "Default: max(5, 2 * workers): a crash loop (many crashes a second) halts "
          "within seconds, sporadic kills of healthy workers do not."),
    _Spec("prefork_recover_window", _parse_seconds,
          "Seconds over which crashes are counted; 0 = the master's whole life."),
    _Spec("prefork_recover_interval", _parse_seconds,
          "Seconds to wait before a crashed worker's replacement boots."),
    _Spec("prefork_count_timeouts", _parse_bool,
          "Count worker timeouts as crashes."),
    _Spec("prefork_stall_threshold", _parse_seconds,
          "Seconds a slot may hold queued connections while its worker takes none on "
          "(a stalled event loop, a full pool) before new connections avoid it; time "
          "the worker waits for a CPU does not count (up to 10 thresholds); "
          "0 = off."),
    _Spec("prefork_load_aware", _parse_bool,
          "New connections go to the workers with the most room (each allowed worker "
          "gets a share in proportion to how far it is below the busiest), and a "
          "worker holding 3 or more connections more than the least loaded one ends "
          "the keep-alive connections it holds above the mean, each after a complete "
          "response (Connection: close; at most 16 a look), so their clients "
          "reconnect where there is room. False = the kernel's hash alone."),
    _Spec("prefork_logger", _parse_logger,
          "Logger for the plugin's messages: an object with debug/info/warning/error "
          "or a dotted import path; None = Gunicorn's error log."),
    _Spec("prefork_on_ready", _hook("server", "workers"),
          "Called as on_ready(server, workers) once all initial workers are serving."),
    _Spec("prefork_on_recover", _hook("server", "old_worker", "new_worker"),
          "Called as on_recover(server, old_worker, new_worker) after a crashed worker "
          "was replaced."),
    _Spec("prefork_status_bind", status_bind_mod.parse,
          "HOST:PORT where the master answers GET /metrics (Prometheus), /ready, "
          "/live and HAProxy's agent-check (agent-send \"agent\\n\"); None = off. "
          "Must not be an application bind. See docs/scaling-out.md."),
)

_MISSING = object()


def _register_with_gunicorn() -> None:
    """Make ``cfg.set('prefork_…', v)`` and config-file loading work once known.

    The registered validators accept anything: validation happens in :func:`load`, so
    every source gives the same one-line error.
    """
    for spec in SPECS:
        _gunicorn.register_setting(spec.name, spec.desc)


_register_with_gunicorn()


def _raw_value(spec: _Spec, cfg: Any, namespace: Mapping[str, object],
               environ: Mapping[str, str]) -> tuple[object, str]:
    if spec.env in environ:
        return environ[spec.env], f"environment variable {spec.env}"
    if spec.name in namespace:
        return namespace[spec.name], "the configuration file"
    value = _gunicorn.registered_value(cfg, spec.name)
    if value is not None:
        return value, "the configuration"
    return _MISSING, "default"


def default_recover_threshold(workers: int) -> int:
    """Crashes tolerated in the window when ``prefork_recover_threshold`` is not set.

    A crash loop (every worker dying on its first request) produces several crashes a
    second per worker and passes this within seconds; three OOM-style kills of
    long-running workers of a 2-worker server within a minute do not.
    """
    return max(5, 2 * workers)


def load(cfg: Any, environ: Mapping[str, str] | None = None) -> PreforkSettings:
    """Read and validate every ``prefork_*`` setting for this configuration."""
    environ = os.environ if environ is None else environ
    namespace = _gunicorn.config_namespace(cfg)
    values: dict[str, Any] = {}
    for spec in SPECS:
        raw, source = _raw_value(spec, cfg, namespace, environ)
        if raw is _MISSING:
            continue
        try:
            values[spec.field] = spec.parse(raw)
        except (ValueError, TypeError) as exc:
            raise SettingError(spec.name, raw, str(exc), source) from None
    values.setdefault("recover_threshold", default_recover_threshold(int(cfg.workers)))
    _check_status_bind(values.get("status_bind"), cfg, namespace, environ)
    return PreforkSettings(**values)


def _check_status_bind(status: StatusAddress | None, cfg: Any,
                       namespace: Mapping[str, object], environ: Mapping[str, str]) -> None:
    """The status endpoint must not listen on an application address."""
    if status is None:
        return
    taken = status_bind_mod.clash(status, getattr(cfg, "address", None) or ())
    if taken is not None:
        spec = next(spec for spec in SPECS if spec.name == "prefork_status_bind")
        raw, source = _raw_value(spec, cfg, namespace, environ)
        raise SettingError(spec.name, raw, f"the application listens on {taken}: "
                           "give the status endpoint a port of its own", source)


def unknown_names(cfg: Any, environ: Mapping[str, str] | None = None
                  ) -> list[suggest.UnknownName]:
    """``prefork_*`` names in the configuration and ``GUNICORN_PREFORK_*`` variables
    in the environment that are not settings (misspelt ones): ignored, worth a
    warning."""
    environ = os.environ if environ is None else environ
    namespace = _gunicorn.config_namespace(cfg)
    return [
        *suggest.unknown(namespace, "prefork_", (spec.name for spec in SPECS),
                         "in the configuration file"),
        *suggest.unknown(environ, ENV_PREFIX, (spec.env for spec in SPECS),
                         "in the environment"),
    ]


def effective_values(loaded: PreforkSettings) -> dict[str, object]:
    """Every setting's name and the value in force (``--print-config``)."""
    return {spec.name: getattr(loaded, spec.field) for spec in SPECS}


def changes(old: PreforkSettings, new: PreforkSettings) -> list[str]:
    """``name old -> new`` for each setting a reload (HUP) changed."""
    before, after = effective_values(old), effective_values(new)
    return [f"{name} {before[name]!r} -> {after[name]!r}" for name in after
            if after[name] != before[name]]
