"""The one boundary with Gunicorn's and gevent's internals.

Rule: every name outside Gunicorn's documented worker and hook API (the ``Worker``
methods a custom worker overrides: ``init_process``, ``run``, ``notify``,
``handle_*``, and its ``alive``, ``nr``, ``max_requests``, ``cfg``, ``log``, ``pid``,
``ppid``; the settings' values read from ``cfg``; the server hooks) is touched in
this module and nowhere else, but for the rows below that name another module (a
method a subclass there overrides, an attribute read where it is used; none of them
private: ``tests/test_layout.py`` checks that no other module uses a private name of
Gunicorn's or gevent's). The rest of the package uses the small typed surface below;
``tests/test_gunicorn_boundary.py`` (the compatibility canary) checks that every
touchpoint still exists with the expected shape on the installed Gunicorn, so
a Gunicorn that renames one fails one clear test instead of a server at run time.

Touchpoints, and the Gunicorn versions they were read in (20.1, 21.2, 22.0, 23.0,
24.1, 25.3, 26.2, 27.0: all of them unless said otherwise):

=====================================================  =================================
touchpoint                                             used for
=====================================================  =================================
``Arbiter.start/setup/spawn_worker/kill_worker/        wrapped (:func:`install_arbiter`)
manage_workers/reload/stop`` (names and signatures)
``arbiter.log.info("Listening at: %s ...", ...)``      :func:`listening_once` (one
in ``Arbiter.start`` and ``reload``                    address once, not per slot)
``Application.run`` (``gunicorn.app.base``),           wrapped (:func:`install_application_run`)
``cfg.print_config/check_config``, ``str(cfg)``        for ``--check-config``/``--print-config``
``cfg.settings["worker_class"]`` (a dotted name)       :func:`worker_class_name`
``gunicorn.arbiter.os`` (module global)                its ``waitpid`` reports exits
``gunicorn.sock.create_sockets(conf, log, fds=None)``  replaced in the master
``Arbiter.WORKERS`` (pid -> worker dict)               :meth:`ArbiterView.workers`
``Arbiter.LISTENERS``                                  :attr:`ArbiterView.listeners`
``Arbiter.num_workers``                                :attr:`ArbiterView.num_workers`
``Arbiter.systemd``                                    :meth:`ArbiterView.forget_systemd`
``Arbiter.worker_class``                               :meth:`ArbiterView.runs_prefork`
``Arbiter.reexec_pid``, ``master_pid`` (USR2)           :meth:`ArbiterView.shares_slots`
``worker.tmp.last_update()`` / ``.fileno()``           :func:`heartbeat`, :func:`heartbeat_fd`
``worker.aborted`` (set before a timeout's SIGABRT)    :func:`was_aborted`
``worker.age`` (Gunicorn stops the lowest first)       :func:`make_oldest`
``cfg.set("reuse_port", False)``                       :func:`turn_off_reuse_port`
``gunicorn.config.Setting`` (registers on subclass)    :func:`register_setting`,
                                                       :func:`show_settings`
``cfg.settings`` / ``sys.modules["__config__"]``       :func:`config_namespace`
``gunicorn.errors.HaltServer(reason, exit_status)``    :func:`halt`
``gunicorn.sock.TCPSocket/TCP6Socket`` (subclasses of  the slot sockets (:mod:`.master.slot_table`)
``BaseSocket``), ``set_options(sock, bound=False)``
a listener's ``.sock`` (the socket it wraps, set by    queue length, shutdown, BPF program
``BaseSocket.__init__``)                               (:mod:`.master.slot_table`,
                                                       :mod:`.master.steering_program`)
``log.increment(name, value)``, ``log.gauge(name,      the master's statsd metrics
value)`` (``gunicorn.instrument.statsd.Statsd``;       (:mod:`.master.coordinator`,
other loggers have neither: looked up by ``getattr``)  :mod:`.master.steering_report`)
``gunicorn.workers.ggevent.GeventWorker``,             :data:`GeventWorker`,
``ggevent.StreamServer`` (looked up by ``run()``)      :func:`use_stream_server`
``gunicorn.util.http_date`` (looked up per response)   :func:`install_http_date`
``gunicorn.util.close`` (a client's close, async)      :func:`install_close`
``gunicorn.http.wsgi.Response.write``, ``.sock``,      :func:`install_response_write`
``.headers_sent``
``Response.default_headers/force_close/should_close``, :func:`install_response_headers_hook`
``Request.unreader.buf`` (bytes read past a request)  :func:`request_read_ahead`
``.upgrade``, ``.req`` (its ``method``, ``headers``)     and the ``response_*`` helpers
gevent ``StreamServer.do_read/do_handle``, its         :func:`accept_one`, :func:`busy`
``pool.free_count()/size``
gevent ``StreamServer.init_socket()`` (picks the       overridden by ``SlotServer``
handler at ``start()``), ``wrap_socket_and_handle(     (:mod:`.worker.slot_server`)
client_socket, address)`` (TLS: does as gevent's,
``self.wrap_socket(client_socket, **self.ssl_args)``
then ``self.handle``), ``do_handle(*args)``,
``do_close(*args)``, ``max_accept`` (Gunicorn's
``run()`` sets 1; read per accept batch)
``GeventWorker.timeout_ctx()`` (the ``keepalive``      overridden by ``SlotWorker``
wait ``AsyncWorker.handle`` enters per request),       (:mod:`.worker.slot_worker`)
``handle(listener, client, addr)``,
``handle_request(listener_name, req, sock, addr)``
gevent ``StreamServer.socket/_spawn/_handle/do_close``, :func:`passed_connection_server`,
``baseserver._handle_and_close_when_done``, ``full()``, :func:`pool_full`
``gevent.server.GeventSocket(family, type, proto,      :func:`use_client_socket`
fileno)`` (module global, looked up per accept)
gevent ``socket._sock``, ``_wait(_read_event)``        :func:`raw_socket`, :func:`wait_readable`
``worker.booted`` (set after ``init_process``)         :func:`booted`
``Config.__getattr__`` (``settings[name].get()``),     :func:`keep_setting_values`
``Config.set``, ``Config.__setattr__``
``gunicorn.http.message._ip_in_allow_list(ip,         :func:`install_ip_in_allow_list`
allow_list, networks)`` (24+; looked up per call)
``gunicorn.http.wsgi.logging`` (module global, used by   :func:`install_wsgi_logging`
``WSGIErrorsWrapper`` per request)
``gunicorn.http.wsgi.os`` (module global: ``os.environ``  :func:`install_wsgi_os`
``.get("SCRIPT_NAME", "")`` per request in ``create``)
=====================================================  =================================

Version notes: 20.1-23 reap workers inside the SIGCHLD handler (so code called from
``waitpid`` may interrupt the main loop); 24+ reap from the main loop. 24+ bind per
worker themselves when ``reuse_port`` is set (we turn it off: the master owns the
sockets). 20.1-23 wrap a worker's sockets by fd, 24+ ``detach()`` them. The
``Application.run``, ``Listening at`` and ``worker_class`` rows were read in 20.1 and
27.0 (identical there), and so were the ``.sock``, statsd, ``SlotServer`` and
``SlotWorker`` rows (with gevent 25.9 and 26.9); the canary checks every version tox
runs.

Importing this module imports no gevent (``ggevent`` is imported on first use of
:data:`GeventWorker`): the start-up hook (``_gunicorn_prefork_hook``) imports it in
every process that imports ``gunicorn.app.base``, whatever its worker class.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NoReturn

import gunicorn.arbiter
import gunicorn.sock
from gunicorn import util
from gunicorn.config import Setting
from gunicorn.errors import HaltServer
from gunicorn.http import wsgi


def __getattr__(name: str) -> Any:
    """``GeventWorker`` (Gunicorn's gevent worker, the base of ``Worker``), imported
    on first use: ``gunicorn.workers.ggevent`` imports gevent."""
    if name == "GeventWorker":
        from gunicorn.workers import ggevent

        return ggevent.GeventWorker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

#: Gunicorn's listener classes, the bases of the slot sockets.
TCPSocket: type = gunicorn.sock.TCPSocket
TCP6Socket: type = gunicorn.sock.TCP6Socket

#: The arbiter methods :func:`install_arbiter` wraps.
WRAPPED_METHODS = ("start", "setup", "spawn_worker", "kill_worker", "manage_workers",
                   "reload", "stop")


# -- the master: the arbiter ---------------------------------------------------------

class ArbiterView:
    """What the plugin reads and changes of one Gunicorn ``Arbiter``."""

    __slots__ = ("arbiter",)

    def __init__(self, arbiter: Any) -> None:
        #: the arbiter itself, as Gunicorn's hooks receive it (``server``)
        self.arbiter = arbiter

    @property
    def cfg(self) -> Any:
        return self.arbiter.cfg

    @property
    def log(self) -> Any:
        return self.arbiter.log

    def workers(self) -> dict[int, Any]:
        """A snapshot of Gunicorn's pid -> worker dict. Gunicorn 20.1 to 23 reap workers
        in their SIGCHLD handler, which pops from the live dict at any bytecode; the
        copy is made by ``dict()`` in one C call, which no signal handler interrupts.
        Fetch it again after forking or reaping."""
        return dict(self.arbiter.WORKERS)

    @property
    def num_workers(self) -> int:
        return int(self.arbiter.num_workers or 0)

    @property
    def listeners(self) -> list[Any]:
        return list(self.arbiter.LISTENERS)

    @listeners.setter
    def listeners(self, value: Sequence[Any]) -> None:
        self.arbiter.LISTENERS = list(value)

    def forget_systemd(self) -> None:
        """Pass sockets on with ``GUNICORN_FD`` on USR2, not as systemd's ``LISTEN_FDS``."""
        self.arbiter.systemd = False

    def spawn_worker(self) -> int | None:
        pid = self.arbiter.spawn_worker()
        return pid if isinstance(pid, int) else None

    def shares_slots(self) -> bool:
        """A USR2 overlap: this master re-executed a new one that still runs
        (``reexec_pid``), or it is that new master, not promoted yet (``master_pid``,
        the old master's pid until ``maybe_promote_master`` clears it)."""
        return self.started_new_master() or bool(getattr(self.arbiter, "master_pid", 0))

    def started_new_master(self) -> bool:
        """This master re-executed itself (USR2) and the new master still runs."""
        return bool(getattr(self.arbiter, "reexec_pid", 0))

    def runs_prefork(self) -> bool:
        """Does this arbiter run a worker class of this package?"""
        return bool(getattr(self.arbiter.worker_class, "gunicorn_prefork", False))


def heartbeat(worker: Any) -> float | None:
    """When the worker last notified the master (Gunicorn's heartbeat file)."""
    try:
        return float(worker.tmp.last_update())
    except (AttributeError, OSError, ValueError):
        return None


def heartbeat_fd(worker: Any) -> int | None:
    """The heartbeat file's descriptor (shared by master and worker), if open."""
    try:
        return int(worker.tmp.fileno())
    except (AttributeError, OSError, ValueError):
        return None


def booted(worker: Any) -> bool:
    """Has Gunicorn finished the worker's ``init_process`` (its ``booted`` flag)?"""
    return bool(getattr(worker, "booted", False))


def was_aborted(worker: Any) -> bool:
    """Did the master kill this worker for a timeout?"""
    return bool(getattr(worker, "aborted", False))


def age(worker: Any) -> int:
    return int(worker.age)


def make_oldest(worker: Any, workers: Mapping[int, Any]) -> None:
    """Gunicorn stops surplus workers lowest age first: make this one the first.
    (``workers`` may be Gunicorn's live dict: copied in one C call, which its
    SIGCHLD handler cannot interrupt, before a Python loop reads it.)"""
    worker.age = min(age(other) for other in list(workers.values())) - 1


def turn_off_reuse_port(cfg: Any) -> None:
    cfg.set("reuse_port", False)


def halt(reason: str, exit_status: int) -> NoReturn:
    """Stop the master from its main loop with ``exit_status`` (no traceback)."""
    raise HaltServer(reason, exit_status)


class _ArbiterOs(types.ModuleType):
    """``os`` as ``gunicorn.arbiter`` sees it: ``waitpid`` also reports exits."""

    def __init__(self, on_reaped: Callable[[int, int], None]) -> None:
        super().__init__("os")
        self._on_reaped = on_reaped

    def __getattr__(self, name: str) -> Any:
        import os

        return getattr(os, name)

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        import os

        wpid, status = os.waitpid(pid, options)
        if wpid:
            self._on_reaped(wpid, status)
        return wpid, status


Wrapper = Callable[[Callable[..., Any]], Callable[..., Any]]


def install_arbiter(wrappers: Mapping[str, Wrapper],
                    create_sockets: Wrapper,
                    on_reaped: Callable[[int, int], None]) -> None:
    """Wrap the arbiter's methods (``WRAPPED_METHODS``), ``create_sockets`` and the
    arbiter module's ``os.waitpid``. Call once per process."""
    for name, make in wrappers.items():
        if name not in WRAPPED_METHODS:
            raise ValueError(f"not a wrapped arbiter method: {name}")
        _wrap(gunicorn.arbiter.Arbiter, name, make)
    _wrap(gunicorn.sock, "create_sockets", create_sockets)
    gunicorn.arbiter.os = _ArbiterOs(on_reaped)


def _wrap(owner: Any, name: str, make: Wrapper) -> None:
    original = getattr(owner, name)
    setattr(owner, name, functools.wraps(original)(make(original)))


#: How Gunicorn's ``start`` and ``reload`` begin the line naming the listeners.
LISTENING_PREFIX = "Listening at: "


def _each_once(listeners: str) -> str:
    return ",".join(dict.fromkeys(listeners.split(",")))


@contextlib.contextmanager
def listening_once(log: Any) -> Iterator[None]:
    """While inside, ``log.info("Listening at: %s ...", listeners, ...)`` names each
    address once (the arbiter has one listener per slot and bind). Works on any
    logger object that takes an instance attribute; otherwise leaves it alone."""
    original = log.info

    def info(msg: Any, *args: Any, **kwargs: Any) -> Any:
        if (isinstance(msg, str) and msg.startswith(LISTENING_PREFIX) and args
                and isinstance(args[0], str)):
            args = (_each_once(args[0]), *args[1:])
        return original(msg, *args, **kwargs)

    had_own = "info" in getattr(log, "__dict__", {})
    try:
        log.info = info
    except (AttributeError, TypeError):
        yield
        return
    try:
        yield
    finally:
        if had_own:
            log.info = original
        else:
            with contextlib.suppress(AttributeError):
                del log.info


# -- settings ----------------------------------------------------------------------

_registered: dict[str, type] = {}


def register_setting(name: str, desc: str, section: str = "Prefork") -> None:
    """Make ``name`` a Gunicorn setting (known to Configs created from now on).

    Its validator accepts anything: the plugin validates every source itself.
    """
    if name in _registered:
        return
    _registered[name] = type("Setting_" + name, (Setting,), {
        "name": name,
        "section": section,
        "validator": lambda value: value,  # the metaclass makes it a staticmethod
        "default": None,
        "desc": desc,
        "__module__": __name__,
    })


def config_namespace(cfg: Any) -> Mapping[str, object]:
    """The names defined by the configuration file or ``python:`` module of this run."""
    location = None
    if "config" in cfg.settings:
        location = cfg.settings["config"].get()
    if isinstance(location, str) and location.startswith("python:"):
        module = sys.modules.get(location[len("python:"):])
    else:
        module = sys.modules.get("__config__")
    return vars(module) if module is not None else {}


def show_settings(cfg: Any, values: Mapping[str, object]) -> None:
    """Put registered settings with these values into this Config (one built before
    they were registered), so ``str(cfg)`` (``--print-config``) lists them."""
    for name, value in values.items():
        setting = _registered[name]()
        setting.set(value)
        cfg.settings[name] = setting


def worker_class_name(cfg: Any) -> str:
    """The configured worker class as written (``"gunicorn_prefork.Worker"``), without
    importing it; a class object given by a custom application: its dotted name."""
    uri = cfg.settings["worker_class"].get()
    if isinstance(uri, str):
        return uri
    return f"{getattr(uri, '__module__', '')}.{getattr(uri, '__qualname__', '')}"


def checks_config(cfg: Any) -> bool:
    """``--check-config`` or ``--print-config``: Gunicorn loads the app and exits."""
    return bool(cfg.check_config or cfg.print_config)


def application_cfg(app: Any) -> Any:
    return app.cfg


def install_application_run(make: Wrapper) -> None:
    """Wrap ``gunicorn.app.base.Application.run``, which serves ``--check-config`` and
    ``--print-config`` (before any worker class is imported) and then starts the
    arbiter. Call once per process."""
    from gunicorn.app.base import Application

    _wrap(Application, "run", make)


def registered_value(cfg: Any, name: str) -> object | None:
    """A registered setting's value in this Config, None if unset or unknown."""
    setting = cfg.settings.get(name)
    return setting.get() if setting is not None else None


# -- the worker ----------------------------------------------------------------------

def use_stream_server(server_class: type) -> None:
    """Make Gunicorn's gevent worker build ``server_class`` servers (worker only)."""
    from gunicorn.workers import ggevent

    ggevent.StreamServer = server_class


#: Gunicorn's own ``util.http_date`` (formats the Date header).
http_date: Callable[..., str] = util.http_date


def install_close(make: Callable[[Callable[[Any], None]], Callable[[Any], None]]) -> None:
    """Replace ``util.close``, with which Gunicorn's async workers close a client
    connection when its handler ends (worker process only)."""
    util.close = make(util.close)


def install_http_date(replacement: Callable[..., str]) -> None:
    """Replace ``util.http_date``, which Gunicorn looks up for every response."""
    util.http_date = replacement


def keep_setting_values(cfg: Any) -> None:
    """Make ``cfg`` keep each setting's value, once read, as an instance attribute
    (worker process only). ``Config.__getattr__`` runs only for names not found
    on the instance, so a kept value is read without it; ``set`` drops it first."""
    base = type(cfg)
    if getattr(base, "_prefork_keeps_values", False):
        return

    def __getattr__(self: Any, name: str) -> Any:
        value = base.__getattr__(self, name)
        self.__dict__[name] = value
        return value

    def set(self: Any, name: str, value: Any) -> None:
        self.__dict__.pop(name, None)
        base.set(self, name, value)

    cfg.__class__ = type(base.__name__, (base,), {
        "__getattr__": __getattr__, "set": set, "_prefork_keeps_values": True,
        "__module__": base.__module__})


def install_ip_in_allow_list(
        make: Callable[[Callable[[str, Any, Any], bool]], Callable[[str, Any, Any], bool]],
) -> bool:
    """Replace ``gunicorn.http.message._ip_in_allow_list`` with ``make(original)``
    where Gunicorn has it (24+; worker process only). Returns whether it did."""
    from gunicorn.http import message

    original = getattr(message, "_ip_in_allow_list", None)
    if original is None:
        return False
    message._ip_in_allow_list = make(original)
    return True


def install_wsgi_logging(stand_in: types.ModuleType) -> None:
    """Give ``gunicorn.http.wsgi`` ``stand_in`` as its ``logging`` module (worker
    process only): ``WSGIErrorsWrapper`` looks its logger up there per request."""
    wsgi.logging = stand_in


def install_wsgi_os(stand_in: types.ModuleType) -> None:
    """Give ``gunicorn.http.wsgi`` ``stand_in`` as its ``os`` module (worker process
    only): ``create`` reads ``os.environ.get("SCRIPT_NAME", "")`` there per request."""
    wsgi.os = stand_in


def install_response_write(
        make: Callable[[Callable[[Any, bytes], None]], Callable[[Any, bytes], None]]) -> None:
    """Replace ``Response.write`` with ``make(original)`` (worker process only)."""
    wsgi.Response.write = make(wsgi.Response.write)


def install_response_headers_hook(before: Callable[[Any], None]) -> None:
    """Call ``before(response)`` each time Gunicorn builds a response's default
    headers (``Response.default_headers``, where it decides ``Connection``), before it
    does (worker process only)."""
    original = wsgi.Response.default_headers

    def default_headers(self: Any) -> Any:
        before(self)
        return original(self)

    wsgi.Response.default_headers = default_headers


def response_force_close(response: Any) -> None:
    response.force_close()


def response_should_close(response: Any) -> bool:
    return bool(response.should_close())


def response_upgrade(response: Any) -> bool:
    return bool(getattr(response, "upgrade", False))


def response_request(response: Any) -> Any:
    return getattr(response, "req", None)


def request_read_ahead(request: Any) -> bool:
    """Has Gunicorn read bytes past this request from its connection (a pipelined
    request sent in the same packet)? They wait in the connection's ``Unreader``
    buffer, which the next request is parsed from (20.1 to 27, both parsers)."""
    buffer = getattr(getattr(request, "unreader", None), "buf", None)
    return buffer is not None and buffer.getbuffer().nbytes > 0  # (no copy)


def response_headers_sent(response: Any) -> bool:
    return bool(response.headers_sent)


def response_socket(response: Any) -> Any:
    return response.sock


def set_response_socket(response: Any, sock: Any) -> None:
    response.sock = sock


def accept_one(server: Any) -> bool:
    """Accept one queued connection on a gevent server and handle it; False when
    none is waiting (or the socket is closed)."""
    try:
        accepted = server.do_read()
    except OSError:
        return False
    if not accepted:
        return False
    server.do_handle(*accepted)
    return True


def passed_connection_server(server: Any,
                             taken: Callable[[Any], None]) -> Callable[[int], None]:
    """What serving a connection passed in by the master takes, captured while the
    gevent ``server`` is open and started (gevent sets a TLS server's handler,
    ``wrap_socket_and_handle``, in ``init_socket()`` at ``start()``): the returned
    callable serves one (by fd) as ``server`` would have (its pool, its handler,
    TLS), also after ``server`` closed (gevent's ``close()`` drops ``socket``,
    ``_spawn`` and ``_handle``; a worker that stops may still have read one from
    its channel). Sockets are built as ``do_read`` does; ``taken(sock)`` runs for each
one handed to a handler (gevent then calls the server's ``do_close`` once for it)."""
    from gevent import server as gevent_server  # worker only: imports gevent
    from gevent.baseserver import _handle_and_close_when_done

    listener = server.socket
    family, kind, proto = listener.family, listener.type, listener.proto
    spawn, handle, close = server._spawn, server._handle, server.do_close
    if getattr(server, "ssl_enabled", False) and handle != server.wrap_socket_and_handle:
        # gevent picks the TLS handler at start(): captured earlier, a TLS connection
        # would be served as plain HTTP. Never serve one wrongly.
        raise RuntimeError("a TLS server's passed connections need its TLS handler: "
                           "capture them after the server started")

    def serve(fd: int) -> None:
        sock = gevent_server.GeventSocket(family, kind, proto, fileno=fd)
        try:
            address = sock.getpeername()
        except OSError:  # the client left while the connection was on its way
            sock.close()
            return
        args = (sock, address)
        taken(sock)
        try:
            if spawn is None:
                _handle_and_close_when_done(handle, close, args)
            else:
                spawn(_handle_and_close_when_done, handle, close, args)
        except BaseException:
            close(*args)
            raise

    return serve


def use_client_socket(socket_class: type) -> None:
    """Make gevent's servers build the connections they accept (and
    :func:`passed_connection_server` those passed in) as ``socket_class``."""
    from gevent import server as gevent_server

    gevent_server.GeventSocket = socket_class


def wait_readable(sock: Any) -> None:
    """Wait (this greenlet) until a gevent socket is readable, as its ``recv`` does."""
    sock._wait(sock._read_event)


def raw_socket(sock: Any) -> Any:
    """The standard socket inside a gevent socket (gevent's ``_sock``), or ``sock``."""
    return getattr(sock, "_sock", sock)


def pool_full(server: Any) -> bool:
    """Has a gevent server reached ``worker_connections``?"""
    return bool(server.full())


def busy(server: Any) -> bool:
    """Does a gevent server still have connections in hand?"""
    pool = server.pool
    return pool is not None and bool(pool.free_count() != pool.size)
