from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from gunicorn.http import wsgi

from gunicorn_prefork.worker import environ_lookup

NAME = "GUNICORN_PREFORK_TEST_SCRIPT_NAME"


@pytest.fixture
def installed() -> Iterator[None]:
    original = wsgi.os
    environ_lookup.install()
    yield
    wsgi.os = original
    os.environ.pop(NAME, None)


def test_the_same_answers_as_os_environ_as_it_changes(installed: None) -> None:
    env = wsgi.os.environ
    assert type(wsgi.os).__name__ == "EnvironLookup"
    assert env.get(NAME, "") == "" and env.get(NAME) is None
    os.environ[NAME] = "/app"
    assert env.get(NAME, "") == "/app" and env[NAME] == "/app" and NAME in env
    del os.environ[NAME]
    assert env.get(NAME, "x") == "x"
    assert env.get("PATH") == os.environ.get("PATH")
    assert len(env) == len(os.environ) and set(env) == set(os.environ)


def test_every_other_name_is_the_os_modules(installed: None) -> None:
    assert wsgi.os.lseek is os.lseek and wsgi.os.SEEK_CUR == os.SEEK_CUR
    assert wsgi.os.fstat is os.fstat
