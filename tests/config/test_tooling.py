"""Unit tests of --check-config / --print-config for prefork_* (config_tooling)."""

from __future__ import annotations

import io
import sys
import types

import pytest
from gunicorn.config import Config

from gunicorn_prefork.config import tooling


@pytest.fixture
def config_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("__config__")
    monkeypatch.setitem(sys.modules, "__config__", module)
    return module


@pytest.mark.parametrize("value, ours", [
    ("gunicorn_prefork.Worker", True),
    ("gunicorn_prefork.worker.Worker", True),
    ("gevent", False),
    ("gunicorn.workers.ggevent.GeventWorker", False),
    ("my_gunicorn_prefork.Worker", False),
])
def test_only_our_worker_class(value: str, ours: bool) -> None:
    assert tooling.names_this_package(value) is ours


def test_a_bad_value_prints_one_error_line_and_exits_1(config_module: types.ModuleType) -> None:
    config_module.prefork_recover_threshold = -1
    err = io.StringIO()
    with pytest.raises(SystemExit) as exited:
        tooling.check(Config(), environ={}, stderr=err)
    assert exited.value.code == 1
    assert err.getvalue() == ("Error: invalid prefork_recover_threshold = -1 (from the "
                              "configuration file): expected a whole number >= 0\n")


def test_a_unix_bind_is_refused_as_at_start_up(config_module: types.ModuleType) -> None:
    cfg = Config()
    cfg.set("bind", ["unix:/tmp/x.sock"])
    err = io.StringIO()
    with pytest.raises(SystemExit):
        tooling.check(cfg, environ={}, stderr=err)
    assert err.getvalue().startswith("Error: bind unix:/tmp/x.sock: unix sockets")


def test_good_values_are_shown_in_the_config(config_module: types.ModuleType) -> None:
    config_module.prefork_recover_window = 5
    config_module.prefork_recover_windw = 5
    cfg = Config()
    err = io.StringIO()
    tooling.check(cfg, environ={"GUNICORN_PREFORK_REUSEPORT": "off"}, stderr=err)
    assert err.getvalue() == (
        "Warning: prefork: prefork_recover_windw in the configuration file is not a "
        "gunicorn-prefork setting, ignored; did you mean prefork_recover_window?\n")
    printed = str(cfg).splitlines()
    assert any(line.split() == ["prefork_recover_window", "=", "5.0"] for line in printed)
    assert any(line.split() == ["prefork_reuseport", "=", "False"] for line in printed)
    assert any(line.split() == ["prefork_recover_threshold", "=", "5"] for line in printed)
