"""Wires :class:`~gunicorn_prefork.master.coordinator.Master` into Gunicorn's ``Arbiter``.

Installed from ``Worker.setup()``, which Gunicorn calls in the master whenever it
loads the worker class (at start and after every HUP), so a bare
``-k gunicorn_prefork.Worker`` is enough and nothing depends on the user's hooks or
on the Config object (a HUP throws that away). What is wrapped (through
:func:`gunicorn_prefork._gunicorn.install_arbiter`, which lists the versions):

=========================  =====================================================
``Arbiter.start``          read and check the settings; fail start-up clearly;
                           warn of misspelt ``prefork_*`` names; log each
                           address once in "Listening at: ..."
``Arbiter.reload``         log each address once in "Listening at: ..." (HUP)
``gunicorn.sock.create_sockets``  create / adopt the slot table instead of one socket
``Arbiter.setup``          re-read the settings after a HUP
``Arbiter.spawn_worker``   give the new worker its slot's sockets only
``Arbiter.kill_worker``    remember which workers were asked to leave; do not send
                           the SIGTERM of a worker leaving on its own
``Arbiter.manage_workers`` halt past the recovery threshold (main loop only);
                           fork the successors of workers leaving on their own;
                           drain slots before their workers stop, retire them
                           after; steer; fire ``prefork_on_ready``
``os.waitpid`` as seen     classify each reaped worker's exit status (Gunicorn's
  by ``gunicorn.arbiter``  ``child_exit`` hook is not given it)
``Arbiter.stop``           first: the status endpoint answers 503; once the
                           workers are gone: the stall watch stops and its
                           summary is logged (before "Shutting down: Master"),
                           the status endpoint closes
fork                       :mod:`gunicorn_prefork.master.at_fork` (the child's plan,
                           and what the master's objects close in a child)
=========================  =====================================================

Each wrapper does nothing unless the arbiter runs our worker class.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .. import _gunicorn
from ..errors import PreforkError, fail_startup
from . import at_fork
from .coordinator import Master

#: The plugin's state in this master process (inherited, and ignored, by workers).
current: Master | None = None
_installed = False


def _ours(arbiter: Any) -> Master | None:
    master = current
    if master is None or master.server.arbiter is not arbiter or master.pid != os.getpid():
        return None
    if not master.server.runs_prefork():
        return None
    return master


def _start(original: Callable[..., Any]) -> Callable[..., Any]:
    def start(self: Any) -> Any:
        global current
        if _gunicorn.ArbiterView(self).runs_prefork():
            try:
                master = Master(self)
                master.prepare_start()
            except PreforkError as error:
                fail_startup(self.log, self.cfg, error)
            current = master
            master.warn_at_start()
            with _gunicorn.listening_once(self.log):
                result = original(self)
            if master.status is not None:
                master.status.start(self.log)
            if not master.reuseport:  # after Gunicorn's own start-up lines
                master.log.info("prefork_reuseport is off: serving Gunicorn's shared socket")
            return result
        return original(self)
    return start


def _reload(original: Callable[..., Any]) -> Callable[..., Any]:
    def reload(self: Any) -> Any:
        if _ours(self) is None:
            return original(self)
        with _gunicorn.listening_once(self.log):
            return original(self)
    return reload


def _create_sockets(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_sockets(conf: Any, log: Any, fds: Any = None) -> Any:
        master = current
        if master is None or master.pid != os.getpid() or not master.reuseport:
            return original(conf, log, fds)
        try:
            return master.create_listeners(conf, list(fds) if fds else None)
        except PreforkError as error:
            fail_startup(log, conf, error)
    return create_sockets


def _setup(original: Callable[..., Any]) -> Callable[..., Any]:
    def setup(self: Any, app: Any) -> Any:
        result = original(self, app)
        master = _ours(self)
        if master is not None:
            master.reload_settings()
        return result
    return setup


def _spawn_worker(original: Callable[..., Any]) -> Callable[..., Any]:
    def spawn_worker(self: Any) -> Any:
        master = _ours(self)
        if master is None:
            return original(self)
        return master.spawn(lambda: original(self))
    return spawn_worker


def _kill_worker(original: Callable[..., Any]) -> Callable[..., Any]:
    def kill_worker(self: Any, pid: int, sig: int) -> Any:
        master = _ours(self)
        if master is not None:
            if master.swallows_kill(pid, sig):
                return None
            master.note_kill(pid, sig)
        return original(self, pid, sig)
    return kill_worker


def _manage_workers(original: Callable[..., Any]) -> Callable[..., Any]:
    def manage_workers(self: Any) -> Any:
        master = _ours(self)
        if master is not None:
            if master.status is not None:
                master.status.loop_turned()
            try:
                master.halt_if_over_threshold()
            except BaseException:
                if master.status is not None:  # halting: 503 before the stop
                    master.status.begin_halt()
                raise
            master.start_handovers()
            master.settle_drained()
            master.drain_surplus()
        result = original(self)
        if master is not None:
            master.settle_drained()
            master.check_ready()
            master.report_stalls()
        return result
    return manage_workers


def _stop(original: Callable[..., Any]) -> Callable[..., Any]:
    def stop(self: Any, graceful: bool = True) -> Any:
        master = _ours(self)
        if master is not None and master.status is not None:  # 503 before the
            master.status.begin_stop(master.server.shares_slots())  # listeners close
        try:
            return original(self, graceful)
        finally:
            if master is not None:  # the workers are gone: the watch's summary now,
                master.steering.stop()  # before Gunicorn's "Shutting down: Master"
                if master.status is not None:
                    master.status.close()
    return stop


def _on_reaped(pid: int, status: int) -> None:
    master = current
    if master is not None and master.pid == os.getpid():
        master.on_reaped(pid, status)


def install() -> None:
    """Patch Gunicorn once per process; later calls do nothing."""
    global _installed
    if _installed:
        return
    _installed = True
    _gunicorn.install_arbiter(
        {"start": _start, "setup": _setup, "spawn_worker": _spawn_worker,
         "kill_worker": _kill_worker, "manage_workers": _manage_workers,
         "reload": _reload, "stop": _stop},
        create_sockets=_create_sockets, on_reaped=_on_reaped)
    at_fork.install()
