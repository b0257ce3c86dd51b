from __future__ import annotations

import shutil

import pytest


def pytest_report_header() -> list[str]:
    import gevent
    import gunicorn

    return [f"gunicorn {gunicorn.__version__}, gevent {gevent.__version__}"]


@pytest.fixture
def openssl() -> str:
    path = shutil.which("openssl")
    if path is None:
        pytest.skip("the openssl command is not installed (apt-get install openssl)")
    return path
