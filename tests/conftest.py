from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator

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


@pytest.fixture
def listening() -> Iterator[socket.socket]:
    """A TCP socket listening on 127.0.0.1 (an ephemeral port), closed afterwards."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    yield sock
    sock.close()
