from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator

import pytest

#: Lines of each server's log shown under a failed test.
LOG_LINES_ON_FAILURE = 80
#: Debug lines Gunicorn writes per request, left out of that.
PER_REQUEST_LINES = ("[DEBUG] GET ", "[DEBUG] POST ", "[DEBUG] Closing connection")


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


@pytest.fixture(autouse=True)
def _forget_servers() -> Iterator[None]:
    from tests.server import Gunicorn

    Gunicorn.started.clear()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test shows the end of the log of every server it started: CI keeps
    nothing else, and a rare failure needs the master's and workers' own words."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    from tests.server import Gunicorn

    for number, server in enumerate(Gunicorn.started):
        try:
            lines = [line for line in server.log().splitlines()
                     if not any(noise in line for noise in PER_REQUEST_LINES)]
            lines = lines[-LOG_LINES_ON_FAILURE:]
        except OSError:
            continue
        report.sections.append((f"gunicorn log {number} (last {len(lines)} lines)",
                                "\n".join(lines)))
