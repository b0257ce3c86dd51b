"""gunicorn-prefork's interpreter start-up hook, imported by ``gunicorn_prefork_hook.pth``.

Gunicorn builds its Config and serves ``--check-config`` / ``--print-config`` before
it imports the ``-k`` worker class, so ``gunicorn_prefork`` cannot see those runs from
the worker class. Python imports this module at start-up (from the ``.pth`` file in
site-packages, the mechanism setuptools' ``distutils-precedence.pth`` uses). It only
puts :class:`_Finder` at the front of ``sys.meta_path``; the finder answers for one
module, ``gunicorn.app.base``: it lets the normal import happen, then calls
``gunicorn_prefork.config.tooling.install()`` (which wraps ``Application.run``) and
takes itself off ``sys.meta_path``.

A process that never imports ``gunicorn.app.base`` imports nothing else because of
this file (not ``gunicorn_prefork``, not gevent); its only cost is one string
comparison per import. Every failure is swallowed: Gunicorn then behaves as without
the hook, and a real start still validates the settings. Standard library only, and
Python 3.9 syntax (it runs in every interpreter of the environment).
"""

import sys

TYPE_CHECKING = False  # no ``typing`` import at start-up
if TYPE_CHECKING:
    from typing import Any

#: The module after whose import the hook runs: it defines ``Application.run``.
TARGET = "gunicorn.app.base"


def _after_import() -> None:
    try:
        from gunicorn_prefork.config import tooling

        tooling.install()
    except Exception:  # never break gunicorn (or Python) start-up
        pass


class _Loader:
    """The real loader of ``gunicorn.app.base``, then :func:`_after_import`."""

    def __init__(self, loader: "Any") -> None:
        self.loader = loader

    def create_module(self, spec: "Any") -> "Any":
        return self.loader.create_module(spec)

    def exec_module(self, module: "Any") -> None:
        module.__loader__ = self.loader
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _after_import()


class _Finder:
    """Answers only for :data:`TARGET`, once, with the spec the other finders give."""

    @classmethod
    def find_spec(cls, fullname: str, path: "Any" = None, target: "Any" = None) -> "Any":
        if fullname != TARGET:
            return None
        try:
            _uninstall()
            for finder in sys.meta_path:
                find_spec = getattr(finder, "find_spec", None)
                spec = find_spec(fullname, path, target) if find_spec else None
                if spec is not None:
                    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                        spec.loader = _Loader(spec.loader)
                    return spec
        except Exception:  # let the normal import machinery decide
            pass
        return None


def _uninstall() -> None:
    sys.meta_path[:] = [finder for finder in sys.meta_path if finder is not _Finder]


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once)."""
    if TARGET not in sys.modules and _Finder not in sys.meta_path:
        sys.meta_path.insert(0, _Finder)


try:
    install()
except Exception:  # a start-up hook must never raise
    pass
