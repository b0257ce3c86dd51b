"""A stuck worker hands back what it has not started on (issue 29), with real servers.

Two workers; one is made stuck by a CPU-bound request (``/spin``, which never
yields) sent on one of its own keep-alive connections. Its other keep-alive
connections, idle, are handed back to the master, which passes them to the other
worker: their next requests are answered at once, each exactly once (the access log
counts them). What must never move: a connection with bytes of its next request read
(pipelined), a TLS connection after its handshake.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import Gunicorn, free_port, running, wait_for

CONFIG = ('worker_class = "gunicorn_prefork.Worker"\nworkers = 2\nkeepalive = 10\n'
          'loglevel = "info"\nprefork_recover_threshold = 0\naccesslog = "-"\n'
          'access_log_format = "served %(p)s %(r)s"\n')


class Conn:
    """A keep-alive client connection that reads whole answers."""

    def __init__(self, port: int, tls: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.sock = tls.wrap_socket(sock) if tls is not None else sock
        self.buffer = b""
        self.pid = self.get("/warm")[0]

    def send(self, path: str) -> None:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())

    def answer(self) -> tuple[str, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().lower().split("\r\n")[1:])
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return headers["x-worker-pid"], body

    def get(self, path: str) -> tuple[str, bytes]:
        self.send(path)
        return self.answer()

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the server")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Gunicorn, int]]:
    port = free_port()
    with running(tmp_path, config=CONFIG + f'bind = "127.0.0.1:{port}"\n') as started:
        started.wait_serving(port, 2)
        yield started, port


def _split(port: int, on_stuck: int, tls: ssl.SSLContext | None = None
           ) -> tuple[str, list[Conn], list[Conn]]:
    """Open keep-alive connections until one worker (the one to make stuck) holds
    ``on_stuck`` + 1 and the other one at least one: (its pid, its, the other's)."""
    conns: list[Conn] = []
    for _ in range(40):
        conns.append(Conn(port, tls))
        per = Counter(conn.pid for conn in conns)
        if len(per) == 2 and max(per.values()) > on_stuck:
            stuck = per.most_common(1)[0][0]
            return (stuck, [c for c in conns if c.pid == stuck],
                    [c for c in conns if c.pid != stuck])
    raise AssertionError(f"connections did not reach both workers: {Counter(c.pid for c in conns)}")


def _spin(conn: Conn, seconds: float) -> threading.Thread:
    """Make ``conn``'s worker stuck: ``/spin`` on ``conn``, answered in the background."""
    conn.send(f"/spin?{seconds}")
    thread = threading.Thread(target=conn.answer)
    thread.start()
    return thread


def _served(log: str) -> Counter[str]:
    """How many times each request path was served (the access log)."""
    return Counter(re.findall(r"served <\d+> GET (\S+) HTTP", log))


def test_idle_keep_alive_connections_of_a_stuck_worker_go_to_the_other(
        server: tuple[Gunicorn, int]) -> None:
    gunicorn, port = server
    stuck, held, others = _split(port, 3)
    spinning = _spin(held[0], 2)
    time.sleep(0.3)  # stuck now, for 1.7 s more
    answers = []
    for number, conn in enumerate(held[1:]):
        start = time.monotonic()
        pid, _ = conn.get(f"/moved?{number}")
        answers.append((pid, time.monotonic() - start))
    spinning.join()
    assert all(pid != stuck and took < 1.0 for pid, took in answers), (stuck, answers)
    # they stay with the worker they moved to; the stuck one is back and serves its own
    assert all(conn.get("/again")[0] != stuck for conn in held[1:])
    assert held[0].get("/after-spin")[0] == stuck
    wait_for(lambda: len([p for p in _served(gunicorn.log()) if p.startswith("/moved")])
             == len(held) - 1, what="the access log")
    served = _served(gunicorn.log())
    assert all(served[f"/moved?{n}"] == 1 for n in range(len(held) - 1)), served
    assert re.search(rf"worker {stuck} on slot \d is stuck .*: it handed back \d+ "
                     r"connection\(s\) it had not started on", gunicorn.log())
    for conn in held + others:
        conn.close()


def test_a_request_already_in_the_kernel_buffer_moves_with_its_connection(
        server: tuple[Gunicorn, int]) -> None:
    """The next request is sent right after the spin begins, before the hand-back
    (which waits for the loop to be stuck 50 ms): its bytes wait in the socket's
    receive buffer and go with it; the other worker answers it, once."""
    gunicorn, port = server
    stuck, held, others = _split(port, 2)
    spinning = _spin(held[0], 1.5)
    time.sleep(0.005)
    for number, conn in enumerate(held[1:]):
        conn.send(f"/buffered?{number}")
    answers = [conn.answer()[0] for conn in held[1:]]
    spinning.join()
    assert stuck not in answers, (stuck, answers)
    wait_for(lambda: sum(1 for p in _served(gunicorn.log()) if p.startswith("/buffered"))
             == len(held) - 1, what="the access log")
    served = _served(gunicorn.log())
    assert all(served[f"/buffered?{n}"] == 1 for n in range(len(held) - 1)), served
    for conn in held + others:
        conn.close()


def test_a_connection_with_a_pipelined_request_read_never_moves(
        server: tuple[Gunicorn, int]) -> None:
    """``/spin`` and the next request in one write: Gunicorn read both; the second
    is answered by the same worker, after the first, once."""
    gunicorn, port = server
    stuck, held, others = _split(port, 2)
    pipelined = held[0]
    pipelined.sock.sendall(b"GET /spin?1.5 HTTP/1.1\r\nHost: test\r\n\r\n"
                           b"GET /pipelined HTTP/1.1\r\nHost: test\r\n\r\n")
    time.sleep(0.3)
    moved = held[1].get("/moved")[0]
    assert [pipelined.answer()[0], pipelined.answer()[0]] == [stuck, stuck]
    assert moved != stuck  # the idle one did move
    wait_for(lambda: "/pipelined" in _served(gunicorn.log()), what="the access log")
    assert _served(gunicorn.log())["/pipelined"] == 1
    for conn in held + others:
        conn.close()


def test_a_tls_connection_past_its_handshake_never_moves(tmp_path: Path, openssl: str) -> None:
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(tmp_path / "cert.pem")], check=True, capture_output=True)
    port = free_port()
    config = (CONFIG + f'bind = "127.0.0.1:{port}"\ncertfile = "{tmp_path / "cert.pem"}"\n'
              f'keyfile = "{tmp_path / "key.pem"}"\n')
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with running(tmp_path, config=config) as gunicorn:
        gunicorn.wait_serving(port, 2, tls=True)
        stuck, held, others = _split(port, 2, context)
        spinning = _spin(held[0], 1.5)
        time.sleep(0.3)
        answers = [conn.get("/tls")[0] for conn in held[1:]]
        spinning.join()
        assert answers == [stuck] * len(answers)  # served late, by their own worker
        for conn in held + others:
            conn.close()
    assert "handed back" not in gunicorn.log()


def test_a_worker_killed_at_its_timeout_loses_none_of_its_idle_connections(
        tmp_path: Path) -> None:
    """``--timeout 3`` and a spin of 10 s: the master kills the worker; the idle
    keep-alive connections it held were handed back long before, and are served."""
    port = free_port()
    config = CONFIG + f'bind = "127.0.0.1:{port}"\ntimeout = 3\n'
    with running(tmp_path, config=config) as gunicorn:
        gunicorn.wait_serving(port, 2)
        stuck, held, others = _split(port, 3)
        held[0].send("/spin?10")
        wait_for(lambda: f"Worker (pid:{stuck})" in gunicorn.log()
                 or f"WORKER TIMEOUT (pid:{stuck})" in gunicorn.log(),
                 timeout=20, what="the timeout")
        answers = [conn.get("/after-timeout")[0] for conn in held[1:]]
        assert stuck not in answers
        for conn in held + others:
            conn.close()
