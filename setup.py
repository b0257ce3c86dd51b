"""Installs ``gunicorn_prefork_hook.pth`` next to the package; everything else is in
pyproject.toml.

The .pth file holds one line, ``import _gunicorn_prefork_hook``: Python runs it at
start-up, and that module does nothing until ``gunicorn.app.base`` is imported (see
its docstring and the README's *Settings* section). setuptools has no declarative way
to put a file at the root of site-packages, hence this ``build_py``: in a wheel the
file lands in the wheel's root; in an editable install (PEP 660) setuptools points
``install_lib`` at the editable wheel's root while it runs the build commands, and
the file is written there.
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH_NAME = "gunicorn_prefork_hook.pth"  # sorts after setuptools' "__editable__.*.pth"
PTH_LINE = "import _gunicorn_prefork_hook\n"


class build_py_with_pth(build_py):  # type: ignore[misc]  # setuptools names commands so
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            target = self.get_finalized_command("install").install_lib
        else:
            target = self.build_lib
        os.makedirs(target, exist_ok=True)
        path = os.path.join(target, PTH_NAME)
        with open(path, "w", encoding="ascii") as pth:
            pth.write(PTH_LINE)
        self._pth_outputs = [path]

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), *getattr(self, "_pth_outputs", [])]


setup(cmdclass={"build_py": build_py_with_pth})
