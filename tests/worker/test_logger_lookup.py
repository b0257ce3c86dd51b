from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi

from gunicorn_prefork.worker import logger_lookup


@pytest.fixture
def installed() -> Iterator[None]:
    original = wsgi.logging
    logger_lookup.install()
    yield
    wsgi.logging = original


def test_the_same_logger_and_the_rest_of_logging() -> None:
    stand_in = logger_lookup.RememberingLogging()
    assert stand_in.getLogger("gunicorn.error") is logging.getLogger("gunicorn.error")
    assert stand_in.getLogger("gunicorn.error") is stand_in.getLogger("gunicorn.error")
    assert stand_in.getLogger() is logging.getLogger()
    assert stand_in.INFO == logging.INFO and stand_in.Handler is logging.Handler


def test_the_errors_stream_sees_handlers_added_later(installed: None) -> None:
    class Stream:
        def __init__(self) -> None:
            self.text = ""

        def write(self, data: str) -> None:
            self.text += data

        def flush(self) -> None:
            pass

    errorlog = logging.getLogger("gunicorn.error")
    cfg = Config()
    cfg.set("errorlog", "errors.log")  # not "-": Gunicorn skips the first handler
    before = wsgi.WSGIErrorsWrapper(cfg)
    handler = logging.StreamHandler(stream := Stream())  # type: ignore[arg-type]
    errorlog.addHandler(handler)
    try:
        after = wsgi.WSGIErrorsWrapper(cfg)
        after.write("seen")
        assert stream.text == "seen" and len(after.streams) == len(before.streams) + 1
    finally:
        errorlog.removeHandler(handler)
