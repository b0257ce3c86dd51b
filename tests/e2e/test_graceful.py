"""Never less graceful than Gunicorn's gevent worker (issue 8), with real servers.

* Requests longer than ``timeout`` finish within ``graceful_timeout`` on every stop
  path (HUP, TERM to a worker, TTOU): a gevent worker's ``timeout`` is about its
  heartbeat, not about long requests.
* Bytes the application hands over leave at once (a stream's headers, a HEAD
  response, a hijacked socket), and ``environ["gunicorn.socket"]`` is the socket.
* ``max_requests`` recycling overlaps: a new client never waits for the leaving
  worker's slow requests nor for its replacement's boot.

The early-bytes tests do not time anything: the application pauses until the test
asks ``/release``, and the test only asks once the first bytes have arrived.
"""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.server import Gunicorn, free_port, listeners, request, running, wait_for

PREFORK = 'worker_class = "gunicorn_prefork.Worker"\n'

#: Requests take LONG seconds; the master's timeout is far shorter.
LONG = 5
TIMEOUT = 2


def _config(port: int, workers: int, extra: str = "") -> str:
    return (PREFORK + f'bind = "127.0.0.1:{port}"\nworkers = {workers}\nloglevel = "info"\n'
            f"timeout = {TIMEOUT}\ngraceful_timeout = 20\nprefork_recover_threshold = 0\n"
            + extra)


def _long_requests(port: int, count: int, event) -> list[int]:  # type: ignore[no-untyped-def]
    """``count`` concurrent requests of LONG seconds; ``event()`` runs while they wait."""
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(request, "127.0.0.1", port, f"/sleep?{LONG}", LONG + 20)
                   for _ in range(count)]
        time.sleep(0.5)
        event()
        statuses = []
        for future in futures:
            try:
                statuses.append(future.result()[0])
            except OSError as exc:  # cut off: no response
                statuses.append(type(exc).__name__)  # type: ignore[arg-type]
    return statuses


def _no_worker_timeout(server: Gunicorn) -> None:
    assert "WORKER TIMEOUT" not in server.log(), server.log()


def test_hup_lets_requests_longer_than_timeout_finish(tmp_path: Path) -> None:
    port = free_port()
    with running(tmp_path, config=_config(port, 2)) as server:
        server.wait_serving(port, 2)
        statuses = _long_requests(port, 6, lambda: server.signal(signal.SIGHUP))
        _no_worker_timeout(server)
    assert statuses == [200] * 6


def test_term_to_each_worker_lets_requests_longer_than_timeout_finish(
        tmp_path: Path) -> None:
    port = free_port()
    with running(tmp_path, config=_config(port, 2)) as server:
        server.wait_serving(port, 2)
        workers = server.worker_pids()

        def term_each() -> None:
            for pid in workers:
                os.kill(pid, signal.SIGTERM)

        statuses = _long_requests(port, 6, term_each)
        _no_worker_timeout(server)
        # each worker was replaced, and the new ones serve
        wait_for(lambda: not server.worker_pids() & workers, what="old workers gone")
        server.wait_serving(port, 2)
    assert statuses == [200] * 6


def test_ttou_lets_requests_longer_than_timeout_finish(tmp_path: Path) -> None:
    port = free_port()
    with running(tmp_path, config=_config(port, 2)) as server:
        server.wait_serving(port, 2)
        statuses = _long_requests(port, 8, lambda: server.signal(signal.SIGTTOU))
        _no_worker_timeout(server)
        wait_for(lambda: listeners(port) == 1, what="one slot left")
    assert statuses == [200] * 8


def test_master_stop_lets_requests_longer_than_timeout_finish(tmp_path: Path) -> None:
    port = free_port()
    with running(tmp_path, config=_config(port, 2)) as server:
        server.wait_serving(port, 2)
        statuses = _long_requests(port, 6, lambda: server.signal(signal.SIGTERM))
        assert server.wait_exit(30) == 0
        _no_worker_timeout(server)
    assert statuses == [200] * 6


def test_max_requests_overlap_serves_a_new_client_at_once(tmp_path: Path) -> None:
    """One worker, max_requests 3: the readiness request, then two slow ones make the
    worker leave. A third client is answered while the slow ones still run."""
    port = free_port()
    config = _config(port, 1, "max_requests = 3\n")
    with running(tmp_path, config=config) as server:
        wait_for(lambda: request("127.0.0.1", port)[0] == 200, what="serving")  # nr 1
        done: dict[str, float] = {}

        def timed(name: str, path: str) -> int:
            status = request("127.0.0.1", port, path, LONG + 20)[0]
            done[name] = time.monotonic()
            return status

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            slow = [pool.submit(timed, f"slow{n}", f"/sleep?{LONG}") for n in range(2)]
            wait_for(lambda: "Autorestarting worker" in server.log(), what="max_requests")
            time.sleep(1.5)  # past the leaving worker's next loop turn (1 s)
            third = pool.submit(timed, "third", "/")
            statuses = [third.result(), *(future.result() for future in slow)]
        _no_worker_timeout(server)
    assert statuses == [200] * 3
    assert done["third"] < min(done["slow0"], done["slow1"]), done


# -- early bytes -------------------------------------------------------------------

def _read_until(conn: socket.socket, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def one_worker(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    config = PREFORK + f'bind = "127.0.0.1:{port}"\nworkers = 1\n'
    with running(tmp_path, config=config, app="streams:app"):
        wait_for(lambda: request("127.0.0.1", port, "/socket")[0] == 200, what="serving")
        yield port


def _first_bytes_then_release(port: int, raw_request: bytes, marker: bytes) -> bytes:
    """Send a request, read up to ``marker`` while the app pauses, then release it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(raw_request)
        try:
            first = _read_until(conn, marker)
        finally:
            request("127.0.0.1", port, "/release")
        rest = b""
        while chunk := conn.recv(65536):
            rest += chunk
    return first + rest


def test_stream_headers_leave_before_the_first_event(one_worker: int) -> None:
    data = _first_bytes_then_release(
        one_worker, b"GET /sse HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"text/event-stream" in data
    assert b"data: one" in data


def test_head_response_leaves_before_the_generator_ends(one_worker: int) -> None:
    data = _first_bytes_then_release(
        one_worker, b"HEAD /chunks HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")  # (20.1 sends the body too, as stock)


def test_bytes_written_on_the_hijacked_socket_leave_at_once(one_worker: int) -> None:
    data = _first_bytes_then_release(
        one_worker, b"GET /hijack HTTP/1.1\r\nHost: t\r\n\r\n", b"\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert data.endswith(b"after the pause")


def test_the_app_gets_the_real_socket(one_worker: int) -> None:
    assert request("127.0.0.1", one_worker, "/socket")[2] == b"True"
