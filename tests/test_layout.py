"""The package's layout rules (issue 17), checked on the source.

The worker side (``worker/``) and the master side (``master/``) stand side by side on
the shared ground: what crosses the fork (``fork/``), the settings (``config/``),
the errors and the one boundary with Gunicorn's and gevent's internals
(``_gunicorn.py``). Neither side imports the other, the ground imports neither, and
:mod:`gunicorn_prefork.worker_class` (the class users name) is the one module that
joins them. No module is longer than :data:`MAX_LINES` (the boundary aside).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gunicorn_prefork"
MAX_LINES = 350
SIDES = ("master", "worker")
GROUND = ("fork", "config", "errors", "_gunicorn")


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = ["gunicorn_prefork", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module of the package ``path`` imports, also inside functions."""
    name = _name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {module for module in found if module.startswith("gunicorn_prefork")}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_side_imports_the_other_and_the_ground_imports_neither(path: Path) -> None:
    here = _part(_name(path))
    if here == "worker_class" or _name(path) == "gunicorn_prefork":
        return  # the joint and the public face
    allowed_sides = {here} if here in SIDES else set()
    wrong = {module for module in _imports(path)
             if _part(module) in SIDES and _part(module) not in allowed_sides}
    wrong |= {module for module in _imports(path) if _part(module) == "worker_class"}
    assert not wrong, f"{_name(path)} imports {sorted(wrong)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_too_long_to_read(path: Path) -> None:
    if path.name == "_gunicorn.py":
        return  # the boundary: one table of every touchpoint
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_rules_see_a_cross_side_import(tmp_path: Path) -> None:
    """The checker itself: a worker module importing the master is found."""
    bad = PACKAGE / "worker" / "slot_worker.py"
    assert "gunicorn_prefork.fork.leaving" in _imports(bad)
    assert {_part(m) for m in _imports(PACKAGE / "worker_class.py")} >= set(SIDES)


def test_every_subpackage_is_packaged() -> None:
    """A wheel built from pyproject.toml holds every subpackage (a plain
    ``packages = ["gunicorn_prefork"]`` left them out: installs from a wheel failed
    with "No module named 'gunicorn_prefork.config'"; editable installs hid it)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    find_packages = pytest.importorskip("setuptools").find_packages

    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packaged = set(find_packages(str(PACKAGE.parent), include=include))
    present = {_name(init) for init in PACKAGE.rglob("__init__.py")}
    assert present <= packaged, present - packaged
