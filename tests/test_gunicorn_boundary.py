"""Compatibility canary: every Gunicorn and gevent internal the plugin touches.

One test per touchpoint of ``gunicorn_prefork/_gunicorn.py`` (its docstring lists
them), checked on the installed Gunicorn: a Gunicorn that renames or reshapes one
fails here, by name, instead of a server failing at run time. tox runs this on every
supported version.
"""

from __future__ import annotations

import inspect
import os
import socket
import types
from collections.abc import Iterator
from typing import Any

import gevent.pool
import gevent.server
import gunicorn.arbiter
import gunicorn.sock
import pytest
from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.config import Config
from gunicorn.http import RequestParser, wsgi
from gunicorn.workers import base, ggevent

from gunicorn_prefork import _gunicorn


def _params(function: Any) -> list[str]:
    return list(inspect.signature(function).parameters)


class _App(BaseApplication):  # type: ignore[misc]
    def load_config(self) -> None:
        self.cfg.set("worker_class", "gevent")
        self.cfg.set("workers", 2)

    def load(self) -> Any:
        return lambda environ, start_response: []


@pytest.fixture
def arbiter() -> Any:
    return gunicorn.arbiter.Arbiter(_App())


@pytest.fixture
def worker() -> Iterator[Any]:
    cfg = Config()
    made = base.Worker(7, os.getpid(), [], None, 30, cfg, None)
    yield made
    made.tmp.close()


@pytest.mark.parametrize("name, params", [
    ("start", ["self"]),
    ("setup", ["self", "app"]),
    ("spawn_worker", ["self"]),
    ("kill_worker", ["self", "pid", "sig"]),
    ("manage_workers", ["self"]),
    ("stop", ["self", "graceful"]),
])
def test_wrapped_arbiter_methods(name: str, params: list[str]) -> None:
    assert name in _gunicorn.WRAPPED_METHODS
    assert _params(getattr(gunicorn.arbiter.Arbiter, name)) == params


def test_arbiter_module_uses_a_global_os_with_waitpid() -> None:
    arbiter_os = vars(gunicorn.arbiter)["os"]
    assert isinstance(arbiter_os, types.ModuleType) and callable(arbiter_os.waitpid)
    assert "os.waitpid(" in inspect.getsource(gunicorn.arbiter.Arbiter.reap_workers)


def test_create_sockets_signature() -> None:
    assert _params(gunicorn.sock.create_sockets) == ["conf", "log", "fds"]


def test_arbiter_attributes(arbiter: Any) -> None:
    view = _gunicorn.ArbiterView(arbiter)
    assert view.workers() == {} and isinstance(arbiter.WORKERS, dict)
    assert view.listeners == [] and isinstance(arbiter.LISTENERS, list)
    assert view.num_workers == 2
    assert arbiter.systemd is False
    view.forget_systemd()
    assert view.runs_prefork() is False and arbiter.worker_class is not None
    assert view.cfg is arbiter.cfg and view.log is arbiter.log
    # a USR2 overlap: reexec() sets reexec_pid (reset when that child is reaped);
    # a new master has master_pid until maybe_promote_master() clears it
    assert arbiter.reexec_pid == 0 and arbiter.master_pid == 0
    assert view.shares_slots() is False and view.started_new_master() is False
    arbiter.reexec_pid = 12345
    assert view.shares_slots() is True and view.started_new_master() is True
    arbiter.reexec_pid, arbiter.master_pid = 0, 12345
    assert view.shares_slots() is True and view.started_new_master() is False
    arbiter.master_pid = 0
    reexec = inspect.getsource(gunicorn.arbiter.Arbiter.reexec)
    assert "self.reexec_pid = os.fork()" in reexec
    promote = inspect.getsource(gunicorn.arbiter.Arbiter.maybe_promote_master)
    assert "self.master_pid = 0" in promote


def test_surplus_workers_are_stopped_lowest_age_first() -> None:
    source = inspect.getsource(gunicorn.arbiter.Arbiter.manage_workers)
    assert "w[1].age" in source and "self.kill_worker(pid, signal.SIGTERM)" in source


def test_worker_heartbeat_age_and_aborted(worker: Any) -> None:
    assert isinstance(_gunicorn.heartbeat(worker), float)
    assert isinstance(_gunicorn.heartbeat_fd(worker), int)
    assert _gunicorn.age(worker) == 7
    assert _gunicorn.was_aborted(worker) is False
    assert "worker.aborted = True" in inspect.getsource(gunicorn.arbiter.Arbiter.murder_workers)
    _gunicorn.make_oldest(worker, {1: worker})
    assert _gunicorn.age(worker) == 6


def test_reuse_port_can_be_turned_off() -> None:
    cfg = Config()
    cfg.set("reuse_port", True)
    _gunicorn.turn_off_reuse_port(cfg)
    assert cfg.reuse_port is False


def test_settings_register_through_the_setting_metaclass() -> None:
    _gunicorn.register_setting("prefork_canary_setting", "A canary.")
    cfg = Config()
    assert "prefork_canary_setting" in cfg.settings
    assert _gunicorn.registered_value(cfg, "prefork_canary_setting") is None
    cfg.set("prefork_canary_setting", 3)
    assert _gunicorn.registered_value(cfg, "prefork_canary_setting") == 3


def test_config_files_load_as_the_config_module() -> None:
    import gunicorn.app.base

    assert "'__config__'" in inspect.getsource(gunicorn.app.base.Application)
    assert _gunicorn.config_namespace(Config()) is not None


def test_halt_server() -> None:
    with pytest.raises(BaseException) as caught:
        _gunicorn.halt("reason", 5)
    assert (caught.value.reason, caught.value.exit_status) == ("reason", 5)  # type: ignore[attr-defined]


def test_listener_classes() -> None:
    assert (_gunicorn.TCPSocket, _gunicorn.TCP6Socket) == (gunicorn.sock.TCPSocket,
                                                           gunicorn.sock.TCP6Socket)
    for cls in (_gunicorn.TCPSocket, _gunicorn.TCP6Socket):
        assert issubclass(cls, gunicorn.sock.BaseSocket)
        assert _params(cls.set_options) == ["self", "sock", "bound"]
    assert hasattr(gunicorn.sock.BaseSocket, "FAMILY") or hasattr(_gunicorn.TCPSocket, "FAMILY")


def test_a_listener_holds_its_socket_as_sock() -> None:
    """``listener.sock`` (the master's slot table and steering program read it)."""
    listener = gunicorn.sock.TCPSocket(("127.0.0.1", 0), Config(), None)
    try:
        assert "sock" in vars(listener)  # its own attribute, not BaseSocket.__getattr__'s
        assert isinstance(listener.sock, socket.socket)
        assert listener.sock.getsockname()[0] == "127.0.0.1"
        assert "self.sock = " in inspect.getsource(gunicorn.sock.BaseSocket.__init__)
    finally:
        listener.sock.close()


def test_the_statsd_logger_counts_and_gauges() -> None:
    """``log.increment(name, value)`` and ``log.gauge(name, value)``, called by the
    master when the logger has them (Gunicorn's when ``statsd_host`` is set)."""
    from gunicorn import glogging
    from gunicorn.instrument.statsd import Statsd

    assert _params(Statsd.increment)[:3] == ["self", "name", "value"]
    assert _params(Statsd.gauge) == ["self", "name", "value"]
    assert issubclass(Statsd, glogging.Logger)
    cfg = Config()
    cfg.set("statsd_host", "localhost:8125")
    assert cfg.logger_class is Statsd


def test_gevent_worker_builds_servers_from_a_module_level_name() -> None:
    assert _gunicorn.GeventWorker is ggevent.GeventWorker
    assert "StreamServer(" in inspect.getsource(ggevent.GeventWorker.run)
    assert vars(ggevent)["StreamServer"] is not None


def test_http_date_is_looked_up_per_response() -> None:
    assert _gunicorn.http_date is util.http_date or callable(util.http_date)
    assert "util.http_date()" in inspect.getsource(wsgi.Response.default_headers)


def test_response_write_and_its_socket() -> None:
    assert _params(wsgi.Response.write)[:2] == ["self", "arg"]
    cfg = Config()
    server, client = socket.socketpair()
    with server, client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        request = next(iter(RequestParser(cfg, server, ("127.0.0.1", 1))))
        response = wsgi.Response(request, server, cfg)
        assert _gunicorn.response_socket(response) is server
        assert _gunicorn.response_headers_sent(response) is False
        _gunicorn.set_response_socket(response, client)
        assert response.sock is client


def test_gevent_server_internals() -> None:
    for name in ("do_read", "do_handle", "stop_accepting", "close"):
        assert callable(getattr(gevent.server.StreamServer, name))
    pool = gevent.pool.Pool(3)
    assert pool.free_count() == pool.size == 3


def test_accept_one_takes_one_queued_connection() -> None:
    """gevent's ``do_read`` (None when nothing is queued) and ``do_handle``, as
    :func:`_gunicorn.accept_one` calls them on a server that stopped accepting."""
    import gevent.socket

    handled: list[Any] = []
    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    server = gevent.server.StreamServer(listener, lambda sock, address: handled.append(
        address), spawn=None)  # no greenlet: the handler runs inside do_handle
    server.start()
    server.stop_accepting()
    try:
        assert _gunicorn.accept_one(server) is False
        with socket.create_connection(listener.getsockname()) as client:
            assert _gunicorn.accept_one(server) is True
            assert handled == [client.getsockname()]
            assert _gunicorn.accept_one(server) is False
    finally:
        server.close()


def test_gevent_server_methods_the_slot_server_overrides() -> None:
    """What ``SlotServer`` (``worker/slot_server.py``) overrides: each name is
    gevent's, with the shape it expects, and gevent still calls it."""
    import gevent.baseserver

    from gunicorn_prefork.worker.slot_server import SlotServer

    server_class, base_class = gevent.server.StreamServer, gevent.baseserver.BaseServer
    for name in ("init_socket", "wrap_socket_and_handle", "do_handle", "do_close",
                 "max_accept"):
        assert name in vars(SlotServer) and hasattr(server_class, name), name
    assert _params(server_class.init_socket) == ["self"]
    assert "self._handle = self.wrap_socket_and_handle" in inspect.getsource(
        server_class.init_socket)  # the TLS handler is picked at start()
    assert _params(server_class.wrap_socket_and_handle) == ["self", "client_socket", "address"]
    tls = inspect.getsource(server_class.wrap_socket_and_handle)  # what SlotServer's redoes
    assert "self.wrap_socket(client_socket, **self.ssl_args)" in tls
    assert "self.handle(ssl_socket, address)" in tls
    assert "self.wrap_socket = ssl_context.wrap_socket" in inspect.getsource(
        server_class.__init__)
    assert _params(server_class.do_handle) == ["self", "args"]
    assert _params(server_class.do_close) == ["self", "sock", "args"]
    assert "close = self.do_close" in inspect.getsource(base_class.do_handle)
    assert isinstance(server_class.max_accept, int)
    accepting = inspect.getsource(base_class._do_read)
    assert "range(self.max_accept)" in accepting, accepting[:200]
    assert "self.do_read()" in accepting and "self.do_handle(*args)" in accepting
    assert "server.max_accept = 1" in inspect.getsource(ggevent.GeventWorker.run)


def test_the_worker_methods_the_slot_worker_overrides() -> None:
    """What ``SlotWorker`` (``worker/slot_worker.py``) overrides: ``timeout_ctx`` (the
    ``keepalive`` wait Gunicorn's ``handle`` enters per request), ``handle`` and
    ``handle_request``, with Gunicorn's signatures."""
    from gunicorn.workers import base_async

    from gunicorn_prefork.worker.slot_worker import SlotWorker

    assert "with self.timeout_ctx():" in inspect.getsource(base_async.AsyncWorker.handle)
    expected = {"timeout_ctx": ["self"],
                "handle": ["self", "listener", "client", "addr"],
                "handle_request": ["self", "listener_name", "req", "sock", "addr"]}
    for name, params in expected.items():
        assert _params(getattr(ggevent.GeventWorker, name)) == params, name
        assert name in vars(SlotWorker) and _params(getattr(SlotWorker, name)) == params


def test_the_arbiter_logs_its_listeners_in_one_info_call() -> None:
    for method in (gunicorn.arbiter.Arbiter.start, gunicorn.arbiter.Arbiter.reload):
        source = inspect.getsource(method)
        assert 'self.log.info("Listening at: %s' in source, method
        assert '",".join(' in source or "','.join(" in source, method
    assert _gunicorn.LISTENING_PREFIX == "Listening at: "


def test_listening_once_names_each_address_once() -> None:
    seen: list[tuple[Any, ...]] = []

    class Log:
        def info(self, msg: str, *args: Any) -> None:
            seen.append((msg, *args))

    log = Log()
    with _gunicorn.listening_once(log):
        log.info("Listening at: %s (%s)", "http://a:1,http://b:2,http://a:1,http://b:2", 7)
        log.info("Arbiter booted")
    log.info("Listening at: %s", "http://a:1,http://a:1")
    assert seen == [("Listening at: %s (%s)", "http://a:1,http://b:2", 7),
                    ("Arbiter booted",),
                    ("Listening at: %s", "http://a:1,http://a:1")]
    assert "info" not in vars(log)


def test_check_and_print_config_are_served_by_application_run() -> None:
    from gunicorn.app.base import Application

    source = inspect.getsource(Application.run)
    assert "self.cfg.print_config" in source and "self.cfg.check_config" in source
    assert "print(self.cfg)" in source and "sys.exit(0)" in source
    cfg = Config()
    assert _gunicorn.worker_class_name(cfg) == "sync"
    assert _gunicorn.checks_config(cfg) is False
    cfg.set("check_config", True)
    assert _gunicorn.checks_config(cfg) is True


def test_registered_settings_can_be_shown_in_an_older_config() -> None:
    cfg = Config()
    _gunicorn.register_setting("prefork_canary_shown", "A canary.")
    assert "prefork_canary_shown" not in cfg.settings
    _gunicorn.show_settings(cfg, {"prefork_canary_shown": 4})
    assert "prefork_canary_shown" in str(cfg).split()
    assert cfg.prefork_canary_shown == 4


def test_a_passed_connection_is_served_also_after_its_server_closed() -> None:
    """gevent's StreamServer: ``_spawn``/``_handle``/``do_close``/``socket``, and
    ``_handle_and_close_when_done`` (what ``passed_connection_server`` captures)."""
    import gevent
    import gevent.socket

    got: list[bytes] = []

    def handle(sock: Any, address: Any) -> None:
        got.append(sock.recv(5))
        sock.sendall(b"ok")

    listener = gevent.socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    server = gevent.server.StreamServer(listener, handle)
    server.start()
    taken: list[int] = []
    serve = _gunicorn.passed_connection_server(server, lambda sock: taken.append(1))
    server.close()
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        client = socket.create_connection(other.getsockname())
        conn, _ = other.accept()
    client.sendall(b"hello")
    serve(conn.detach())
    gevent.sleep(0.2)
    assert got == [b"hello"] and client.recv(2) == b"ok" and taken == [1]
    client.close()


def test_config_reads_a_setting_through_getattr_and_changes_it_with_set() -> None:
    assert "__getattr__" in vars(Config) and "set" in vars(Config)
    cfg = Config()
    assert "keepalive" not in vars(cfg)  # looked up through __getattr__
    assert cfg.keepalive == cfg.settings["keepalive"].get()
    with pytest.raises(AttributeError):
        cfg.keepalive = 3  # Config.__setattr__ forbids it
    _gunicorn.keep_setting_values(cfg)
    assert cfg.keepalive == 2 and vars(cfg)["keepalive"] == 2
    cfg.set("keepalive", 7)
    assert cfg.keepalive == 7 and cfg.settings["keepalive"].get() == 7


def test_ip_in_allow_list_is_looked_up_by_the_header_policy() -> None:
    from gunicorn.http import message

    original = getattr(message, "_ip_in_allow_list", None)
    if original is None:  # 20.1 to 23 compare the address as a string
        assert "peer_addr[0] in cfg.forwarded_allow_ips" in inspect.getsource(message)
        return
    assert _params(original) == ["ip_str", "allow_list", "networks"]
    assert "_ip_in_allow_list(self.peer_addr[0], cfg.forwarded_allow_ips," in \
        inspect.getsource(message)


def test_the_wsgi_errors_stream_looks_its_logger_up_in_the_wsgi_module() -> None:
    import logging

    assert wsgi.logging is logging or type(wsgi.logging).__name__ == "RememberingLogging"
    source = inspect.getsource(wsgi.WSGIErrorsWrapper.__init__)
    assert 'logging.getLogger("gunicorn.error")' in source


def test_create_reads_script_name_from_the_wsgi_modules_os() -> None:
    import os

    assert wsgi.os is os or type(wsgi.os).__name__ == "EnvironLookup"
    assert 'os.environ.get("SCRIPT_NAME", "")' in inspect.getsource(wsgi.create)
    assert isinstance(os.environ._data, dict)  # what the stand-in reads
    assert os.environ.encodekey("SCRIPT_NAME") in (b"SCRIPT_NAME", "SCRIPT_NAME")


def test_bytes_read_past_a_request_are_seen_in_its_unreader() -> None:
    """``request_read_ahead``: a pipelined request Gunicorn read with the first one
    waits in ``Request.unreader.buf`` (the parser in use: Python, or 27's C parser)."""
    import socket

    from gunicorn.config import Config
    from gunicorn.http import RequestParser

    get = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
    for sent, expected in ((get + get, True), (get, False)):
        server, client = socket.socketpair()
        with server, client:
            client.sendall(sent)
            request = next(iter(RequestParser(Config(), server, ("127.0.0.1", 1))))
            assert _gunicorn.request_read_ahead(request) is expected


def test_async_workers_close_a_client_with_util_close() -> None:
    """``install_close``: Gunicorn's async worker ends a connection's handler with
    ``util.close(client)``, looked up on the module when it runs."""
    import gunicorn.util
    import gunicorn.workers.base_async

    assert _params(gunicorn.util.close) == ["sock"]
    assert "util.close(client)" in inspect.getsource(gunicorn.workers.base_async)


def test_gevent_builds_accepted_connections_from_a_module_level_name() -> None:
    """``gevent.server.GeventSocket`` is looked up per accept (``do_read``) and by
    :func:`passed_connection_server`; a gevent socket waits with ``_wait(_read_event)``
    (:func:`wait_readable`)."""
    import inspect
    import socket

    import gevent
    import gevent.server
    import gevent.socket

    assert gevent.server.GeventSocket is gevent.socket.socket
    assert "GeventSocket(" in inspect.getsource(gevent.server.StreamServer.do_read)

    class Marked(gevent.socket.socket):  # type: ignore[misc]
        pass

    _gunicorn.use_client_socket(Marked)
    try:
        listener = gevent.socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        server = gevent.server.StreamServer(listener, lambda sock, address: None)
        client = socket.create_connection(listener.getsockname())
        accepted = server.do_read()
        assert accepted is not None and isinstance(accepted[0], Marked)
        waiter = gevent.spawn(_gunicorn.wait_readable, accepted[0])
        gevent.sleep(0.05)
        assert not waiter.dead  # nothing to read yet
        client.sendall(b"x")
        waiter.join(2)
        assert waiter.dead and accepted[0].recv(1) == b"x"
        accepted[0].close()
        client.close()
        server.close()
    finally:
        _gunicorn.use_client_socket(gevent.socket.socket)
