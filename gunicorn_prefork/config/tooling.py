"""``gunicorn --check-config`` and ``--print-config`` for the ``prefork_*`` settings.

Gunicorn serves both from ``Application.run`` and exits there, before it imports the
``-k`` worker class, so nothing of this package would run. The start-up hook
(``_gunicorn_prefork_hook``, loaded by ``gunicorn_prefork_hook.pth``) calls
:func:`install` as soon as ``gunicorn.app.base`` is imported; the wrapped ``run``
then, only when the configured worker class names ``gunicorn_prefork``:

- warns (stderr) of each misspelt ``prefork_*`` / ``GUNICORN_PREFORK_*`` name,
- validates every setting as a real start does: a bad value prints the same
  ``Error: ...`` line and exits with the same status (1),
- puts every setting with its value in force into the Config, so ``--print-config``
  lists them.

Importing this module imports no gevent and registers no setting: for any other
worker class Gunicorn behaves exactly as without the plugin.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from .. import _gunicorn
from ..errors import EXIT_STARTUP_ERROR, PreforkError

PACKAGE = "gunicorn_prefork"
_installed = False


def names_this_package(worker_class: str) -> bool:
    """Does a ``worker_class`` value (``"gunicorn_prefork.Worker"``) name ours?"""
    return worker_class.split(".", 1)[0] == PACKAGE


def check(cfg: Any, environ: Mapping[str, str] | None = None,
          stderr: TextIO | None = None) -> None:
    """Warn, validate (exit 1 on a bad value) and show the settings in ``cfg``."""
    from . import settings
    from .reuseport import check_reuseport_possible

    environ = os.environ if environ is None else environ
    stderr = sys.stderr if stderr is None else stderr
    for unknown in settings.unknown_names(cfg, environ):
        print(f"Warning: prefork: {unknown.message()}", file=stderr, flush=True)
    try:
        loaded = settings.load(cfg, environ)
        if loaded.reuseport:
            check_reuseport_possible(cfg.address)
    except PreforkError as error:
        print(f"Error: {error}", file=stderr, flush=True)
        sys.exit(EXIT_STARTUP_ERROR)
    _gunicorn.show_settings(cfg, settings.effective_values(loaded))


def _run(original: Callable[..., Any]) -> Callable[..., Any]:
    def run(self: Any) -> Any:
        cfg = _gunicorn.application_cfg(self)
        if _gunicorn.checks_config(cfg) and names_this_package(
                _gunicorn.worker_class_name(cfg)):
            check(cfg)
        return original(self)
    return run


def install() -> None:
    """Wrap ``Application.run`` once per process."""
    global _installed
    if _installed:
        return
    _installed = True
    _gunicorn.install_application_run(_run)
