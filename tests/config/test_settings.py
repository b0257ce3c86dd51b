"""Unit tests of the prefork_* parsing and precedence (pure logic)."""

from __future__ import annotations

import logging
import sys
import types
from typing import Any

import pytest
from gunicorn.config import Config

from gunicorn_prefork.config import settings
from gunicorn_prefork.errors import SettingError


def _cfg(workers: int = 4, **values: Any) -> Any:
    cfg = Config()
    cfg.set("workers", workers)
    for name, value in values.items():
        cfg.set(name, value)
    return cfg


@pytest.fixture
def config_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("__config__")
    monkeypatch.setitem(sys.modules, "__config__", module)
    return module


def test_defaults(config_module: types.ModuleType) -> None:
    loaded = settings.load(_cfg(workers=5), environ={})
    assert loaded == settings.PreforkSettings(recover_threshold=10)
    assert settings.load(_cfg(workers=1), environ={}).recover_threshold == 5
    assert settings.load(_cfg(workers=2), environ={}).recover_threshold == 5


def test_config_file_values(config_module: types.ModuleType) -> None:
    config_module.prefork_reuseport = False
    config_module.prefork_recover_window = 0
    config_module.prefork_logger = "logging.root"
    loaded = settings.load(_cfg(), environ={})
    assert loaded.reuseport is False
    assert loaded.recover_window == 0.0
    assert loaded.logger is logging.root


def test_environment_wins(config_module: types.ModuleType) -> None:
    config_module.prefork_reuseport = True
    loaded = settings.load(_cfg(), environ={"GUNICORN_PREFORK_REUSEPORT": "no",
                                            "GUNICORN_PREFORK_RECOVER_THRESHOLD": "7"})
    assert loaded.reuseport is False and loaded.recover_threshold == 7


def test_registered_setting_is_read(config_module: types.ModuleType) -> None:
    assert settings.load(_cfg(prefork_count_timeouts=True), environ={}).count_timeouts is True


def test_python_module_config(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("my_conf")
    module.prefork_recover_interval = 2.5  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "my_conf", module)
    monkeypatch.delitem(sys.modules, "__config__", raising=False)
    loaded = settings.load(_cfg(config="python:my_conf"), environ={})
    assert loaded.recover_interval == 2.5


@pytest.mark.parametrize(("name", "value"), [
    ("prefork_reuseport", "maybe"),
    ("prefork_reuseport", 2),
    ("prefork_recover_threshold", -1),
    ("prefork_recover_threshold", 1.5),
    ("prefork_recover_threshold", True),
    ("prefork_recover_window", "soon"),
    ("prefork_recover_interval", -0.1),
    ("prefork_logger", "no.such.module"),
    ("prefork_logger", object()),
])
def test_bad_values_name_setting_value_and_source(config_module: types.ModuleType,
                                                  name: str, value: object) -> None:
    setattr(config_module, name, value)
    with pytest.raises(SettingError) as caught:
        settings.load(_cfg(), environ={})
    message = str(caught.value)
    assert message.startswith(f"invalid {name} = {value!r} (from the configuration file)")


def test_bad_environment_value_names_the_variable(config_module: types.ModuleType) -> None:
    with pytest.raises(SettingError, match="environment variable GUNICORN_PREFORK_RECOVER_WINDOW"):
        settings.load(_cfg(), environ={"GUNICORN_PREFORK_RECOVER_WINDOW": "x"})


def test_unknown_names_from_the_file_and_the_environment(
        config_module: types.ModuleType) -> None:
    config_module.prefork_recover_threshoId = 3
    config_module.prefork_reuseport = True
    found = settings.unknown_names(_cfg(), environ={"GUNICORN_PREFORK_STALL_TRESHOLD": "1",
                                                    "GUNICORN_PREFORK_REUSEPORT": "1",
                                                    "PATH": "/bin"})
    assert [(u.name, u.where, u.suggestion) for u in found] == [
        ("prefork_recover_threshoId", "in the configuration file",
         "prefork_recover_threshold"),
        ("GUNICORN_PREFORK_STALL_TRESHOLD", "in the environment",
         "GUNICORN_PREFORK_STALL_THRESHOLD")]


def test_effective_values_name_every_setting(config_module: types.ModuleType) -> None:
    values = settings.effective_values(settings.load(_cfg(workers=4), environ={}))
    assert list(values) == [spec.name for spec in settings.SPECS]
    assert values["prefork_recover_threshold"] == 8
    assert values["prefork_reuseport"] is True


def _one_argument(x: object) -> None:
    """A hook with the wrong number of parameters."""


def _ready(server: object, workers: object) -> None:
    """A hook as documented."""


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("prefork_on_ready", "hello", "not a dotted path like 'package.module.function'"),
    ("prefork_on_ready", _one_argument, "expected a function called as f(server, workers)"),
    ("prefork_on_recover", _ready,
     "expected a function called as f(server, old_worker, new_worker)"),
    ("prefork_on_ready", 3, "expected a function"),
])
def test_a_hook_is_checked_where_its_value_is(config_module: types.ModuleType, name: str,
                                              value: object, expected: str) -> None:
    """A hook's signature is checked with the settings (``--check-config`` and at
    start), not when the hook first runs ("prefork_on_ready raised TypeError")."""
    setattr(config_module, name, value)
    with pytest.raises(SettingError) as caught:
        settings.load(_cfg(), environ={})
    assert str(caught.value).startswith(f"invalid {name} = {value!r}")
    assert expected in str(caught.value)


def test_hooks_that_fit_are_taken(config_module: types.ModuleType) -> None:
    config_module.prefork_on_ready = _ready
    config_module.prefork_on_recover = lambda server, *workers: None
    loaded = settings.load(_cfg(), environ={})
    assert loaded.on_ready is _ready and loaded.on_recover is not None


def test_a_reload_names_what_it_changed(config_module: types.ModuleType) -> None:
    old = settings.load(_cfg(workers=4), environ={})
    config_module.prefork_stall_threshold = 0.05
    new = settings.load(_cfg(workers=4), environ={})
    assert settings.changes(old, new) == ["prefork_stall_threshold 0.01 -> 0.05"]
    assert settings.changes(new, new) == []


def test_the_status_bind_is_read_and_may_not_be_an_application_address(
        config_module: types.ModuleType) -> None:
    loaded = settings.load(_cfg(), environ={"GUNICORN_PREFORK_STATUS_BIND": "127.0.0.1:9101"})
    assert str(loaded.status_bind) == "127.0.0.1:9101"
    config_module.prefork_status_bind = "127.0.0.1:8000"
    with pytest.raises(SettingError) as caught:
        settings.load(_cfg(bind=["0.0.0.0:8000"]), environ={})
    assert str(caught.value) == (
        "invalid prefork_status_bind = '127.0.0.1:8000' (from the configuration file): "
        "the application listens on 0.0.0.0:8000: give the status endpoint a port of "
        "its own")
