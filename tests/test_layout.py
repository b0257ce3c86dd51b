"""The package's layout rules (issue 17), checked on the source.

The worker side (``worker/``) and the master side (``master/``) stand side by side on
the shared ground: what crosses the fork (``fork/``), the settings (``config/``),
the errors and the one boundary with Gunicorn's and gevent's internals
(``_gunicorn.py``). Neither side imports the other, the ground imports neither, and
:mod:`gunicorn_prefork.worker_class` (the class users name) is the one module that
joins them. No module imports the package root (``gunicorn_prefork``, the public
face: it is above all of them). No module is longer than :data:`MAX_LINES` (the
boundary aside), and none but the boundary uses a private name of someone else's
(Gunicorn's, gevent's). The benchmarks share one module with the tests: the load
client, ``tests/load.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = "gunicorn_prefork"
PACKAGE = Path(__file__).resolve().parent.parent / ROOT
REPOSITORY = PACKAGE.parent
MAX_LINES = 350
SIDES = ("master", "worker")
GROUND = ("fork", "config", "errors", "_gunicorn")
JOINT = "worker_class"

#: The one import of the joint from below it: ``gunicorn_prefork.worker.Worker``, the
#: class's name in 0.1, resolved on first use (``worker/__init__.py``).
OLD_NAMES = {f"{ROOT}.worker": f"{ROOT}.{JOINT}"}

#: Private names of others a module may use: the standard library's, as
#: ``(receiver, name)``.
STDLIB_PRIVATE = {("os", "_exit")}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _name(path: Path) -> str:
    parts = [ROOT, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    """Is ``name`` (``gunicorn_prefork.x``) a module or subpackage of the package?"""
    relative = Path(*name.split(".")[1:])
    return ((PACKAGE / relative).with_suffix(".py").is_file()
            or (PACKAGE / relative / "__init__.py").is_file())


def _imports_in(source: str, name: str, is_package: bool) -> set[str]:
    """Every module of the package the module ``name`` imports, also inside
    functions; ``gunicorn_prefork`` itself only for an import of the root package
    (``import gunicorn_prefork``, ``from gunicorn_prefork import Worker``), not for
    one of its modules (``from .. import _gunicorn``)."""
    package = name if is_package else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module == ROOT:
                for alias in node.names:
                    submodule = f"{ROOT}.{alias.name}"
                    found.add(submodule if _is_module(submodule) else ROOT)
                continue
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {module for module in found if module == ROOT or module.startswith(ROOT + ".")}


def _imports(path: Path) -> set[str]:
    return _imports_in(path.read_text(), _name(path), path.name == "__init__.py")


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _wrong_imports(name: str, imports: set[str]) -> set[str]:
    """The imports of the module ``name`` that break the layout rules."""
    if name == ROOT:
        return set()  # the public face: names what users import
    here = _part(name)
    wrong = {module for module in imports if module == ROOT}  # up to the root
    if here == JOINT:
        return wrong  # joins the sides
    allowed_sides = {here} if here in SIDES else set()
    wrong |= {module for module in imports
              if _part(module) in SIDES and _part(module) not in allowed_sides}
    old_name = OLD_NAMES.get(name)
    wrong |= {module for module in imports if _part(module) == JOINT
              and not (old_name and (module == old_name or module.startswith(old_name + ".")))}
    return wrong


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_side_imports_the_other_and_none_imports_the_root(path: Path) -> None:
    wrong = _wrong_imports(_name(path), _imports(path))
    assert not wrong, f"{_name(path)} imports {sorted(wrong)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_too_long_to_read(path: Path) -> None:
    if path.name == "_gunicorn.py":
        return  # the boundary: one table of every touchpoint
    assert len(path.read_text().splitlines()) <= MAX_LINES


def _wrong_in(source: str, name: str, is_package: bool = False) -> set[str]:
    return _wrong_imports(name, _imports_in(source, name, is_package))


def test_the_rules_see_a_cross_side_import() -> None:
    """The checker itself: a worker module importing the master is found (and the
    other way round), the ground importing a side, anyone but the root the joint."""
    bad = PACKAGE / "worker" / "slot_worker.py"
    assert "gunicorn_prefork.fork.leaving" in _imports(bad)
    assert {_part(m) for m in _imports(PACKAGE / "worker_class.py")} >= set(SIDES)
    assert _wrong_in("from ..master import arbiter_hook", "gunicorn_prefork.worker.x") \
        == {"gunicorn_prefork.master", "gunicorn_prefork.master.arbiter_hook"}
    assert _wrong_in("import gunicorn_prefork.worker.slot_worker",
                     "gunicorn_prefork.master.x") == {"gunicorn_prefork.worker.slot_worker"}
    assert _wrong_in("from ..worker import slot_server", "gunicorn_prefork.fork.x")
    assert _wrong_in("from .worker_class import Worker", "gunicorn_prefork._gunicorn")
    assert _wrong_in("from ..worker_class import Worker", "gunicorn_prefork.master.x")
    assert not _wrong_in("from . import slot_server", "gunicorn_prefork.worker.x")


def test_the_rules_see_an_upward_import() -> None:
    """The checker itself: a subpackage importing the package root is found, in any
    spelling; importing one of the root's modules (``_gunicorn``, ``errors``) is not
    importing the root."""
    upward = {
        ("import gunicorn_prefork", "gunicorn_prefork.worker", True),
        ("def f():\n    import gunicorn_prefork\n", "gunicorn_prefork.worker", True),
        ("def f():\n    from .. import Worker\n", "gunicorn_prefork.worker", True),
        ("from gunicorn_prefork import is_child", "gunicorn_prefork.master.x", False),
        ("from .. import errors, is_child", "gunicorn_prefork.config.x", False),
        ("from . import PreforkError", "gunicorn_prefork.errors", False),
    }
    for source, name, is_package in upward:
        assert _wrong_in(source, name, is_package) == {ROOT}, source
    for source, name in [("from .. import _gunicorn, errors", "gunicorn_prefork.fork.x"),
                         ("from ..errors import SettingError", "gunicorn_prefork.master.x"),
                         ("import gunicorn_prefork.errors", "gunicorn_prefork.config.x"),
                         ("from .config import tooling", "gunicorn_prefork.errors")]:
        assert not _wrong_in(source, name), source
    # the old name of the worker class: from the joint, where the class is defined
    assert not _wrong_in("def __getattr__(name):\n    from ..worker_class import Worker\n",
                         "gunicorn_prefork.worker", True)
    assert _imports(PACKAGE / "worker" / "__init__.py") == {
        "gunicorn_prefork.worker_class", "gunicorn_prefork.worker_class.Worker"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _own_names(tree: ast.AST) -> set[str]:
    """The names a module defines: functions, classes, assigned names, attributes it
    sets on ``self``/``cls``, ``__slots__``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
              and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            names.add(node.attr)
        elif isinstance(node, ast.Assign) and any(
                isinstance(target, ast.Name) and target.id == "__slots__"
                for target in node.targets):
            names.update(const.value for const in ast.walk(node.value)
                         if isinstance(const, ast.Constant) and isinstance(const.value, str))
    return names


def _foreign_private_uses(source: str) -> list[str]:
    """Private names (one leading underscore) a module uses but does not define:
    ``x._name``, ``getattr(x, "_name")`` (and ``setattr``, ``hasattr``,
    ``delattr``), and private names or modules imported from Gunicorn or gevent.

    Pragmatic: a name the module defines itself counts as its own wherever it is
    used (``self._sock`` of its own class hides gevent's ``sock._sock`` in that
    module), and so does an attribute it sets on ``self``."""
    tree = ast.parse(source)
    own = _own_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            receiver = node.value.id if isinstance(node.value, ast.Name) else None
            if node.attr not in own and (receiver, node.attr) not in STDLIB_PRIVATE:
                found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
              and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str) and _private(node.args[1].value)
              and node.args[1].value not in own):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""])
            names = [alias.name for alias in node.names] if isinstance(node, ast.ImportFrom) \
                else []
            for module in modules:
                if module.split(".")[0] in ("gunicorn", "gevent") and (
                        any(_private(part) for part in module.split("."))
                        or any(_private(name) for name in names)):
                    found.append(f"{node.lineno}: {ast.unparse(node)}")
    return sorted(found)


@pytest.mark.parametrize("path", [path for path in _modules() if path.name != "_gunicorn.py"],
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_boundary_uses_gunicorns_and_gevents_private_names(path: Path) -> None:
    """Every private name a module uses is its own (or the standard library's, listed
    in :data:`STDLIB_PRIVATE`): one of Gunicorn's or gevent's is used in
    ``_gunicorn.py`` only, where the boundary's table lists it. (Every module, not
    only those importing Gunicorn or gevent: their objects reach the others too.)"""
    assert _foreign_private_uses(path.read_text()) == []


def test_the_private_names_check_sees_them() -> None:
    """The checker itself, on the boundary (which uses several) and on small
    examples."""
    boundary = "\n".join(_foreign_private_uses((PACKAGE / "_gunicorn.py").read_text()))
    for expected in ("server._spawn", "server._handle", "message._ip_in_allow_list",
                     "getattr(sock, '_sock', sock)", "import _handle_and_close_when_done"):
        assert expected in boundary
    assert len(_foreign_private_uses(
        "import gevent._socket3\n"
        "from gunicorn.http.message import _ip_in_allow_list\n"
        "def f(server, worker):\n"
        "    worker._tmp = 1\n"
        "    hasattr(server, '_stop_event')\n"
        "    return server._spawn\n")) == 5
    assert _foreign_private_uses(
        "import os\n"
        "_cache = {}\n"
        "class A:\n"
        "    __slots__ = ('_held',)\n"
        "    def __init__(self):\n"
        "        self._x = 1\n"
        "    def _go(self, other):\n"
        "        os._exit(_cache.get(self._x, other._held))\n"
        "        return getattr(other, '_go')\n") == []


def test_the_benchmarks_share_only_the_load_client_with_the_tests() -> None:
    """``tests/load.py`` is the one home of the HTTP load client: the e2e tests and
    ``python -m benchmarks.lifecycle`` import it (from the repository root, where both
    run). It imports only the standard library, nothing else under ``tests/`` imports
    from the benchmarks, and no benchmark imports anything else of the tests."""
    def imported(path: Path) -> set[str]:
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level:
                found.add(node.module or "")
        return found

    benchmarks = sorted((REPOSITORY / "benchmarks").rglob("*.py"))
    tests = sorted((REPOSITORY / "tests").rglob("*.py"))
    from_tests = {module for path in benchmarks for module in imported(path)
                  if module.split(".")[0] == "tests"}
    assert from_tests == {"tests.load"}
    assert not [path for path in tests
                if any(module.split(".")[0] == "benchmarks" for module in imported(path))]
    load = imported(REPOSITORY / "tests" / "load.py")
    assert not {module.split(".")[0] for module in load} & {
        "tests", "benchmarks", ROOT, "gunicorn", "gevent", "pytest"}


def test_every_subpackage_is_packaged() -> None:
    """A wheel built from pyproject.toml holds every subpackage (a plain
    ``packages = ["gunicorn_prefork"]`` left them out: installs from a wheel failed
    with "No module named 'gunicorn_prefork.config'"; editable installs hid it)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    find_packages = pytest.importorskip("setuptools").find_packages

    config = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
    include = config["tool"]["setuptools"]["packages"]["find"]["include"]
    packaged = set(find_packages(str(REPOSITORY), include=include))
    present = {_name(init) for init in PACKAGE.rglob("__init__.py")}
    assert present <= packaged, present - packaged
