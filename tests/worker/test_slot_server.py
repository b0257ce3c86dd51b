"""A slot's gevent server (:mod:`gunicorn_prefork.worker.slot_server`) serves a connection
the master passed in exactly as one it accepted: over TLS too (issue 19: the handler
was captured before gevent switched it to TLS at ``start()``, and a moved HTTPS
connection was answered in cleartext)."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.socket
import gevent.ssl
import pytest

from gunicorn_prefork.worker import slot_server
from gunicorn_prefork.worker.slot_server import SlotServer


@pytest.fixture
def tls_context(tmp_path: Path, openssl: str) -> gevent.ssl.SSLContext:
    """A server-side TLS context with a fresh certificate; gevent's, cooperative as
    in a worker."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    return context


@pytest.fixture
def no_servers() -> Iterator[None]:
    yield
    for server in slot_server.servers:
        server.close_now()
    slot_server.servers.clear()


def _passed_connection() -> tuple[socket.socket, int]:
    """A connected client and the descriptor of its server side (as the master
    would pass it: accepted elsewhere)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        client = socket.create_connection(other.getsockname())
        conn, _ = other.accept()
    return client, conn.detach()


def _server(ssl_args: dict[str, Any], seen: list[Any]) -> SlotServer:
    def handle(sock: Any, address: Any) -> None:
        seen.append(type(sock).__name__)
        sock.recv(100)
        sock.sendall(b"HTTP/1.0 200 OK\r\n\r\nhello")

    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    return SlotServer(listener, handle, **ssl_args)


def _in_thread(work: Any) -> list[Any]:
    """Run a blocking client in a thread while this one runs the gevent hub."""
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(work())
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    while thread.is_alive():
        gevent.sleep(0.01)
    return result


def test_a_passed_tls_connection_is_served_over_tls(
        tls_context: gevent.ssl.SSLContext, no_servers: None) -> None:
    seen: list[Any] = []
    server = _server({"ssl_context": tls_context}, seen)
    assert server.serve_passed is None  # not started: no handler to capture yet
    server.start()
    assert server.serve_passed is not None
    client, fd = _passed_connection()
    server.serve_passed(fd)

    def https() -> bytes:
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        with tls.wrap_socket(client) as conn:
            conn.settimeout(5)
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return conn.recv(100)

    assert _in_thread(https) == [b"HTTP/1.0 200 OK\r\n\r\nhello"]
    assert seen == ["SSLSocket"]


def test_plaintext_passed_to_a_tls_server_gets_no_cleartext_answer(
        tls_context: gevent.ssl.SSLContext, no_servers: None) -> None:
    seen: list[Any] = []
    server = _server({"ssl_context": tls_context}, seen)
    server.start()
    client, fd = _passed_connection()
    assert server.serve_passed is not None
    server.serve_passed(fd)

    def plain() -> bytes:
        client.settimeout(5)
        client.sendall(b"GET / HTTP/1.0\r\n\r\n")
        try:
            return client.recv(100)
        except ConnectionResetError:
            return b""
        finally:
            client.close()

    answer = _in_thread(plain)
    assert answer and not answer[0].startswith(b"HTTP"), answer
    assert seen == []  # the handler never ran: the TLS handshake failed first


def test_a_plain_server_serves_a_passed_connection(no_servers: None) -> None:
    seen: list[Any] = []
    server = _server({}, seen)
    server.start()
    client, fd = _passed_connection()
    assert server.serve_passed is not None
    server.serve_passed(fd)

    def plain() -> bytes:
        client.settimeout(5)
        with client:
            client.sendall(b"GET / HTTP/1.0\r\n\r\n")
            return client.recv(100)

    assert _in_thread(plain) == [b"HTTP/1.0 200 OK\r\n\r\nhello"]


def test_a_connection_counts_as_taken_on_when_accepted_before_its_tls_handshake(
        tls_context: gevent.ssl.SSLContext, no_servers: None) -> None:
    """The stall watch's progress: a worker busy with TLS handshakes takes connections
    on (counting when the handler starts, after the handshake, made it look stalled)."""
    taken: list[int] = []
    SlotServer.on_take = lambda: taken.append(1)
    try:
        seen: list[Any] = []
        server = _server({"ssl_context": tls_context}, seen)
        server.start()
        silent = socket.create_connection(server.address)  # never says hello
        client, fd = _passed_connection()
        assert server.serve_passed is not None
        server.serve_passed(fd)
        gevent.sleep(0.2)
        assert len(taken) == 2 and seen == []  # both taken on, no handler ran yet
        silent.close()
        client.close()
    finally:
        SlotServer.on_take = None


def test_a_tls_handshake_waits_for_a_new_loop_turn_once_the_turn_is_over_budget(
        tls_context: gevent.ssl.SSLContext, no_servers: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A handshake costs about a millisecond of CPU: a burst of them in one loop turn
    kept the worker from taking its next connections on (false stalls). A connection
    whose handshake comes late in a long turn yields to the loop first."""
    from gunicorn_prefork.worker import loop_turn

    loop_turn.install()
    ages: list[float] = []

    def handshake(sock: object, **ssl_args: object) -> None:
        ages.append(loop_turn.age())
        raise OSError("the client is gone")  # and a failed handshake ends quietly

    server = _server({"ssl_context": tls_context}, [])
    server.start()
    monkeypatch.setattr(server, "wrap_socket", handshake)

    def late_in_a_long_turn() -> None:
        loop_turn.yield_to_loop()                           # a fresh turn
        end = time.perf_counter() + 2 * loop_turn.TURN_BUDGET
        while time.perf_counter() < end:                    # other handshakes
            pass
        server.wrap_socket_and_handle(None, None)

    gevent.spawn(late_in_a_long_turn).join()
    server.close()
    assert ages and ages[0] < 2 * loop_turn.TURN_BUDGET, ages
