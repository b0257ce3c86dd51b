"""The status endpoint's server (:mod:`gunicorn_prefork.master.status_server`) on a
real socket: it answers HTTP and HAProxy's agent, and no client can hold it."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator

import pytest

from gunicorn_prefork.config.status_bind import StatusAddress
from gunicorn_prefork.errors import StartupError
from gunicorn_prefork.master import status_server
from gunicorn_prefork.master.status_server import StatusServer, answer_for, open_listener


def _respond(method: str, path: str) -> tuple[str, str, str]:
    return "200 OK", "text/plain", f"{method} {path}\n"


def _agent() -> str:
    return "up 100%\n"


@pytest.fixture
def server() -> Iterator[StatusServer]:
    sock = open_listener(StatusAddress("127.0.0.1", 0), successor=False)
    running = StatusServer(sock, _respond, _agent)
    running.start()
    yield running
    running.close()


def _port(server: StatusServer) -> int:
    assert server.sock is not None
    return int(server.sock.getsockname()[1])


def _ask(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


def test_answer_for_waits_for_the_whole_head() -> None:
    assert answer_for(b"GET /ready HTTP/1.1\r\nHost: x\r\n", _respond, _agent) is None
    answer = answer_for(b"GET /ready?x=1 HTTP/1.1\r\nHost: x\r\n\r\n", _respond, _agent)
    assert answer is not None and answer.endswith(b"\r\n\r\nGET /ready\n")
    assert answer_for(b"agent\n", _respond, _agent) == b"up 100%\n"
    assert answer_for(b"G", _respond, _agent) is None
    big = answer_for(b"G" * status_server.MAX_HEAD, _respond, _agent)
    assert big is not None and big.startswith(b"HTTP/1.1 431 ")


def test_http_and_agent(server: StatusServer) -> None:
    port = _port(server)
    answer = _ask(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: 13\r\n" in answer and answer.endswith(b"GET /metrics\n")
    assert _ask(port, b"agent\n") == b"up 100%\n"


def test_a_slow_or_idle_crowd_cannot_hold_it(server: StatusServer,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    port = _port(server)
    idle = [socket.create_connection(("127.0.0.1", port))
            for _ in range(status_server.MAX_CLIENTS + 20)]
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /ready HTTP/1.1\r\n")
    try:
        started = time.monotonic()
        assert _ask(port, b"GET /ready HTTP/1.1\r\n\r\n").endswith(b"GET /ready\n")
        # the slow one is closed at its deadline, whatever it sends
        slow.settimeout(status_server.DEADLINE + 5)
        for _ in range(int(status_server.DEADLINE) + 3):
            try:
                slow.sendall(b"X")
            except OSError:
                break
            time.sleep(1)
        assert slow.recv(100) == b""
        assert time.monotonic() - started < status_server.DEADLINE + 5
    finally:
        for conn in [*idle, slow]:
            conn.close()


def test_a_port_in_use_is_a_startup_error() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(StartupError, match=f"prefork_status_bind = '127.0.0.1:{port}'"
                           ": cannot listen there: the port is in use"):
            open_listener(StatusAddress("127.0.0.1", port), successor=False)


def test_a_successor_shares_the_address(server: StatusServer) -> None:
    port = _port(server)
    second = open_listener(StatusAddress("127.0.0.1", port), successor=True)
    second.close()


def test_no_descriptor_survives_in_a_child(server: StatusServer) -> None:
    port = _port(server)
    assert server.sock is not None
    listener = server.sock.fileno()
    pid = os.fork()
    if pid == 0:
        try:
            os.fstat(listener)
            still_open = True
        except OSError:
            still_open = False
        os._exit(1 if still_open or server.sock is not None or server.running else 0)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert not server.running  # paused by the fork until the master resumes it
    from gunicorn_prefork.master.master_thread import resume_after_fork
    resume_after_fork()
    assert _ask(port, b"agent\n") == b"up 100%\n"
