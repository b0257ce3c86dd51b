"""Keep-alive shedding loses nothing with real clients (issue 28: the condition for
turning it on by default).

Two workers take a keep-alive load of 32 connections; then TTIN twice: two new
workers hold nothing, so the others end keep-alive connections above their share
after a response (``Connection: close``) and their clients reconnect where there is
room. Each real client must see every request answered, none failed: ``wrk``,
ApacheBench (``ab -k``), Python's ``http.client``, and ``wrk`` through a HAProxy
keep-alive pool (``http-reuse always``). Each test also checks that connections were
shed (the master's exit summary), or it would prove nothing.

Needs ``wrk``, ``ab`` (apache2-utils) and ``haproxy`` from Debian: skipped without
them, failed in CI (``CI`` set).
"""

from __future__ import annotations

import http.client
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.server import Gunicorn, free_port, running
from tests.tools import debian_tool

PREFORK = 'worker_class = "gunicorn_prefork.Worker"\n'
CONNECTIONS = 32
SECONDS = 4


def _tool(name: str) -> str:
    return debian_tool(name, {"ab": "apache2-utils"}.get(name, name))


@pytest.fixture
def shedding_server(tmp_path: Path) -> Iterator[tuple[Gunicorn, int]]:
    port = free_port()
    config = (PREFORK + f'bind = "127.0.0.1:{port}"\nworkers = 2\nloglevel = "info"\n'
              "prefork_recover_threshold = 0\nprefork_load_aware = True\n")
    with running(tmp_path, config=config) as server:
        server.wait_serving(port, 2)
        yield server, port


def _grow_while(server: Gunicorn, load: Callable[[], str]) -> str:
    """Run ``load`` (returns its report) while two workers are added a second in."""
    def grow() -> None:
        time.sleep(1.0)
        for _ in range(2):
            server.signal(signal.SIGTTIN)
            time.sleep(0.3)

    grower = threading.Thread(target=grow)
    grower.start()
    try:
        return load()
    finally:
        grower.join()


def _shed(server: Gunicorn) -> int:
    server.signal(signal.SIGTERM)
    server.wait_exit(20)
    found = re.search(r"keep-alive rebalancing: (\d+) connection", server.log())
    return int(found.group(1)) if found else 0


def _wrk(url: str) -> str:
    result = subprocess.run(
        [_tool("wrk"), "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--timeout", "10s", url],
        capture_output=True, text=True, timeout=SECONDS + 30, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _wrk_failures(report: str) -> list[str]:
    assert re.search(r"(\d+) requests in", report), report
    return [line.strip() for line in report.splitlines()
            if "Socket errors" in line or "Non-2xx" in line]


def test_wrk_sees_no_failure(shedding_server: tuple[Gunicorn, int]) -> None:
    server, port = shedding_server
    report = _grow_while(server, lambda: _wrk(f"http://127.0.0.1:{port}/"))
    assert _wrk_failures(report) == [], report
    assert _shed(server) > 0, "nothing was shed: no test"


def test_ab_keepalive_sees_no_failure(shedding_server: tuple[Gunicorn, int]) -> None:
    server, port = shedding_server

    def ab() -> str:
        result = subprocess.run(
            [_tool("ab"), "-k", "-q", "-c", str(CONNECTIONS), "-t", str(SECONDS),
             "-n", "10000000", "-s", "10", f"http://127.0.0.1:{port}/"],
            capture_output=True, text=True, timeout=SECONDS + 30, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    report = _grow_while(server, ab)
    assert re.search(r"Complete requests:\s+\d+", report), report
    assert re.search(r"Failed requests:\s+0\b", report), report
    assert "Non-2xx" not in report, report
    assert _shed(server) > 0, "nothing was shed: no test"


def test_http_client_sees_no_failure(shedding_server: tuple[Gunicorn, int]) -> None:
    server, port = shedding_server
    failures: list[str] = []
    answered = [0] * CONNECTIONS
    stop = threading.Event()

    def client(number: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(f"status {response.status}")
                answered[number] += 1
            except (OSError, http.client.HTTPException) as exc:
                failures.append(repr(exc))
                conn.close()
        conn.close()

    def load() -> str:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(CONNECTIONS)]
        for thread in threads:
            thread.start()
        time.sleep(SECONDS)
        stop.set()
        for thread in threads:
            thread.join()
        return ""

    _grow_while(server, load)
    assert failures == [], failures[:10]
    assert sum(answered) > CONNECTIONS
    assert _shed(server) > 0, "nothing was shed: no test"


HAPROXY = """\
global
    maxconn 1024
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend web
    bind 127.0.0.1:{front}
    default_backend app
backend app
    http-reuse always
    server app 127.0.0.1:{port} maxconn {connections}
"""


def test_wrk_through_a_haproxy_keepalive_pool_sees_no_failure(
        shedding_server: tuple[Gunicorn, int], tmp_path: Path) -> None:
    server, port = shedding_server
    front = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY.format(front=front, port=port, connections=CONNECTIONS))
    proxy = subprocess.Popen([_tool("haproxy"), "-f", str(config), "-db"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                http.client.HTTPConnection("127.0.0.1", front, timeout=2).request("GET", "/")
                break
            except OSError:
                time.sleep(0.05)
        report = _grow_while(server, lambda: _wrk(f"http://127.0.0.1:{front}/"))
    finally:
        proxy.terminate()
        output = proxy.communicate(timeout=10)[0]
    assert _wrk_failures(report) == [], (report, output)
    assert _shed(server) > 0, "nothing was shed: no test"
