"""A real HAProxy in front of two servers, guided by their status endpoints (issue 30).

Each server runs with ``prefork_status_bind``; HAProxy checks ``GET /ready`` on that
port (``option httpchk``) and asks the agent (``agent-check``, ``agent-send
"agent\\n"``) for a weight. With every worker of one server SIGSTOPped, the master
answers 503 and ``down``, HAProxy takes the server out and no request fails (those
already queued there are answered once the workers run again). The agent's weights
follow the workers: a 1-worker and a 3-worker server get new connections about 1:3.

Needs ``haproxy`` (``apt-get install haproxy``): skipped without it, failed in CI.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.server import Gunicorn, free_port, request, running, wait_for
from tests.tools import debian_tool

PREFORK = 'worker_class = "gunicorn_prefork.Worker"\n'

HAPROXY_CONFIG = """\
global
    maxconn 1024
    stats socket {stats} mode 600 level admin

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check 2s
    retries 3
    option redispatch

frontend web
    bind 127.0.0.1:{port}
    default_backend app

backend app
    balance roundrobin
    http-reuse safe
    option httpchk
    http-check send meth GET uri /ready ver HTTP/1.1 hdr Host status
    http-check expect status 200
"""
SERVER = ("    server s{n} 127.0.0.1:{app} check port {status} inter 100ms fall 1 rise 2 "
          "weight 16 agent-check agent-port {status} agent-inter 100ms "
          'agent-send "agent\\n"\n')


@pytest.fixture
def haproxy() -> str:
    return debian_tool("haproxy", "haproxy")


def _config(app: int, status: int, workers: int) -> str:
    return (PREFORK + f'bind = "127.0.0.1:{app}"\nworkers = {workers}\nloglevel = "info"\n'
            f'prefork_recover_threshold = 0\nprefork_status_bind = "127.0.0.1:{status}"\n')


def _status(port: int, path: str) -> int:
    return request("127.0.0.1", port, path, timeout=5)[0]


def agent(port: int) -> str:
    """What the status port answers to HAProxy's agent line."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(b"agent\n")
        data = b""
        while chunk := conn.recv(256):
            data += chunk
    return data.decode().strip()


@dataclass
class HAProxy:
    """One HAProxy with a generated config; a server per (app port, status port)."""

    tmp: Path
    binary: str
    servers: list[tuple[int, int]]

    def __post_init__(self) -> None:
        self.port = free_port()
        self.stats = self.tmp / "haproxy.sock"
        self.log_path = self.tmp / "haproxy.log"
        text = HAPROXY_CONFIG.format(stats=self.stats, port=self.port)
        text += "".join(SERVER.format(n=n, app=app, status=status)
                        for n, (app, status) in enumerate(self.servers, 1))
        self.config = self.tmp / "haproxy.cfg"
        self.config.write_text(text)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def state(self) -> dict[str, tuple[int, int]]:
        """{server name: (operational state, 2 = up; current weight)}."""
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(5)
            conn.connect(str(self.stats))
            conn.sendall(b"show servers state app\n")
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
        found = {}
        for line in data.decode().splitlines():
            fields = line.split()
            if len(fields) > 7 and not line.startswith("#") and fields[1] == "app":
                found[fields[3]] = (int(fields[5]), int(fields[7]))
        return found

    @contextlib.contextmanager
    def running(self) -> Iterator[HAProxy]:
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen([self.binary, "-f", str(self.config), "-db"],
                                    stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            wait_for(lambda: proc.poll() is None and self.stats.exists()
                     and len(self.state()) == len(self.servers),
                     what=f"HAProxy's stats socket; log:\n{self.log()}")
            yield self
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def _serving(server: Gunicorn, app: int, status: int, workers: int) -> None:
    server.wait_serving(app, workers)
    wait_for(lambda: _status(status, "/ready") == 200, what=f"/ready on {status}")


def test_a_server_whose_workers_are_all_stopped_is_taken_out_and_nothing_fails(
        tmp_path: Path, haproxy: str) -> None:
    ports = [(free_port(), free_port()) for _ in range(2)]
    (one, two) = (tmp_path / "one", tmp_path / "two")
    one.mkdir()
    two.mkdir()
    with running(one, config=_config(*ports[0], 2)) as first, \
            running(two, config=_config(*ports[1], 2)) as second:
        _serving(first, *ports[0], 2)
        _serving(second, *ports[1], 2)
        proxy = HAProxy(tmp_path, haproxy, ports)
        with proxy.running():
            wait_for(lambda: all(up == 2 for up, _ in proxy.state().values()),
                     what="both servers up in HAProxy")
            stopped = first.worker_pids()
            others = {str(pid) for pid in second.worker_pids()}
            answers: list[tuple[float, float, str]] = []

            def one_request() -> None:
                start = time.monotonic()
                try:
                    status, headers, _body = request("127.0.0.1", proxy.port, timeout=30)
                    outcome = headers.get("x-worker-pid", "") if status == 200 \
                        else f"status {status}"
                except OSError as exc:
                    outcome = f"error {type(exc).__name__}"
                answers.append((start, time.monotonic(), outcome))

            with concurrent.futures.ThreadPoolExecutor(64) as pool:
                load_start = time.monotonic()
                futures = []
                stopped_at = down_at = cont_at = None
                try:
                    while time.monotonic() - load_start < 8:  # 50 new connections a second
                        futures.append(pool.submit(one_request))
                        now = time.monotonic()
                        if stopped_at is None and now - load_start > 1:
                            for pid in stopped:
                                os.kill(pid, signal.SIGSTOP)
                            stopped_at = now
                        if stopped_at is not None and down_at is None \
                                and proxy.state()["s1"][0] != 2:
                            down_at = now
                        if stopped_at is not None and cont_at is None \
                                and now - stopped_at > 5:
                            for pid in stopped:
                                os.kill(pid, signal.SIGCONT)
                            cont_at = now
                        time.sleep(0.02)
                finally:
                    for pid in stopped:  # never leave one stopped
                        os.kill(pid, signal.SIGCONT)
                for future in futures:
                    future.result(60)
            # back in the rotation once its workers run again
            wait_for(lambda: proxy.state()["s1"][0] == 2, what="server 1 back in HAProxy")
            log = proxy.log()
    assert stopped_at is not None and cont_at is not None
    # no request failed: those queued at the stopped server waited for it
    failed = [outcome for _, _, outcome in answers if not outcome.isdigit()]  # not a pid
    assert not failed and len(answers) == len(futures), (Counter(failed), log)
    # HAProxy saw it go (~0.1-0.3 s here; the bound is generous) ...
    assert down_at is not None and down_at - stopped_at < 3, (down_at, stopped_at, log)
    # ... and sent it nothing new while it was stopped: the requests started 3 s into
    # the stop went to the other server
    late = [outcome for start, _, outcome in answers if stopped_at + 3 < start < cont_at]
    assert late and set(late) <= others, (Counter(late), others)


def test_the_agents_weights_split_new_connections_by_free_workers(
        tmp_path: Path, haproxy: str) -> None:
    ports = [(free_port(), free_port()) for _ in range(2)]
    (small, large) = (tmp_path / "small", tmp_path / "large")
    small.mkdir()
    large.mkdir()
    with running(small, config=_config(*ports[0], 1)) as one_worker, \
            running(large, config=_config(*ports[1], 3)) as three_workers:
        _serving(one_worker, *ports[0], 1)
        _serving(three_workers, *ports[1], 3)
        # idle: one free worker is 100 %, three are 300 %
        wait_for(lambda: agent(ports[0][1]) == "up 100%", what="the 1-worker agent at 100%")
        wait_for(lambda: agent(ports[1][1]) == "up 300%", what="the 3-worker agent at 300%")
        proxy = HAProxy(tmp_path, haproxy, ports)
        with proxy.running():
            # HAProxy applies the percentage to the configured weight 16: 16 and 48
            wait_for(lambda: proxy.state() == {"s1": (2, 16), "s2": (2, 48)},
                     what=f"the agent's weights in HAProxy: {proxy.state()}")
            large_pids = {str(pid) for pid in three_workers.worker_pids()}
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                pids = list(pool.map(
                    lambda _: request("127.0.0.1", proxy.port, timeout=10)[1]["x-worker-pid"],
                    range(200)))
    share = sum(pid in large_pids for pid in pids) / len(pids)
    assert 0.6 <= share <= 0.9, (share, Counter(pids))
