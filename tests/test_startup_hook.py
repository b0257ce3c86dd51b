"""The interpreter start-up hook (gunicorn_prefork_hook.pth, _gunicorn_prefork_hook):
installed, a no-op until gunicorn.app.base is imported, then wrapping Application.run."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path


def _python(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stderr == "", out.stderr
    return out.stdout.strip()


def test_the_pth_file_is_installed() -> None:
    pth = Path(sysconfig.get_paths()["purelib"]) / "gunicorn_prefork_hook.pth"
    assert pth.read_text() == "import _gunicorn_prefork_hook\n"


def test_nothing_is_imported_in_a_process_without_gunicorn() -> None:
    loaded = _python("import sys; print(sorted(m for m in sys.modules "
                     "if ('prefork' in m or 'gevent' in m or 'gunicorn' in m or m == 'typing')"
                     " and not m.startswith('__editable__')))")  # an editable install's finder
    assert loaded == "['_gunicorn_prefork_hook']"


def test_importing_gunicorn_wraps_application_run_without_gevent() -> None:
    shown = _python(
        "import sys, gunicorn.app.base as base\n"
        "print(base.Application.run.__code__.co_filename.endswith('config_tooling.py'),"
        " 'gevent' in sys.modules,"
        " any(type(f).__name__ == 'type' and f.__name__ == '_Finder' for f in sys.meta_path),"
        " base.__loader__.__class__.__name__)")
    assert shown == "True False False SourceFileLoader"


def test_a_failing_hook_breaks_nothing() -> None:
    shown = _python(
        "import sys; sys.modules['gunicorn_prefork.config_tooling'] = None\n"
        "import gunicorn.app.base as base\n"
        "print(base.Application.run.__module__)")
    assert shown == "gunicorn.app.base"
