"""The interpreter start-up hook (gunicorn_prefork_hook.pth, _gunicorn_prefork_hook):
installed, a no-op until gunicorn.app.base is imported, then wrapping Application.run."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import _gunicorn_prefork_hook
from tests.server import QUIET_GUNICORN_20


def _python(code: str) -> str:
    env = {**os.environ, "PYTHONWARNINGS": QUIET_GUNICORN_20}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True, env=env)
    assert out.stderr == "", out.stderr
    return out.stdout.strip()


def test_the_pth_file_is_installed() -> None:
    pth = Path(sysconfig.get_paths()["purelib"]) / "gunicorn_prefork_hook.pth"
    assert pth.read_text() == "import _gunicorn_prefork_hook\n"


def test_nothing_is_imported_in_a_process_without_gunicorn() -> None:
    loaded = _python("import sys; print(sorted(m for m in sys.modules "
                     "if ('prefork' in m or 'gevent' in m or 'gunicorn' in m)"
                     " and not m.startswith('__editable__')))")  # an editable install's finder
    assert loaded == "['_gunicorn_prefork_hook']"


def test_the_hook_itself_imports_only_sys() -> None:
    """(``typing`` may be loaded at start-up by others, e.g. on 3.9 an editable
    install's finder; the hook must not add anything.)"""
    tree = ast.parse(Path(_gunicorn_prefork_hook.__file__).read_text())
    at_import = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert [alias.name for node in at_import for alias in node.names] == ["sys"]


def test_importing_gunicorn_wraps_application_run_without_gevent() -> None:
    shown = _python(
        "import sys, gunicorn.app.base as base\n"
        "print(base.Application.run.__code__.co_filename.endswith('config/tooling.py'),"
        " 'gevent' in sys.modules,"
        " any(type(f).__name__ == 'type' and f.__name__ == '_Finder' for f in sys.meta_path),"
        " base.__loader__.__class__.__name__)")
    assert shown == "True False False SourceFileLoader"


def test_a_failing_hook_breaks_nothing() -> None:
    shown = _python(
        "import sys; sys.modules['gunicorn_prefork.config.tooling'] = None\n"
        "import gunicorn.app.base as base\n"
        "print(base.Application.run.__module__)")
    assert shown == "gunicorn.app.base"
