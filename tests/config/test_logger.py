from __future__ import annotations

import logging

import pytest

from gunicorn_prefork.config.logger import LoggerLike, PluginLog, resolve_logger

special = logging.getLogger("prefork-special")


def test_dotted_paths_and_objects() -> None:
    assert resolve_logger("logging.root") is logging.root
    assert resolve_logger("tests.config.test_logger:special") is special
    assert resolve_logger(special) is special
    assert isinstance(special, LoggerLike)


@pytest.mark.parametrize("value", ["nodots", "no_such_mod.x", "logging.no_such_attr", 42])
def test_unusable_loggers(value: object) -> None:
    with pytest.raises(ValueError):
        resolve_logger(value)


def test_messages_are_prefixed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="prefork-special")
    PluginLog(special).info("slot %d", 3)
    assert caplog.records[0].getMessage() == "prefork: slot 3"
