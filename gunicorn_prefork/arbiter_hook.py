"""Wires :class:`~gunicorn_prefork.master.Master` into Gunicorn's ``Arbiter``.

Installed from ``Worker.setup()``, which Gunicorn calls in the master whenever it
loads the worker class (at start and after every HUP), so a bare
``-k gunicorn_prefork.Worker`` is enough and nothing depends on the user's hooks or
on the Config object (a HUP throws that away). The wrapped methods exist under the
same names and signatures in every supported Gunicorn (20.1 to 27):

=========================  =====================================================
``Arbiter.start``          read and check the settings; fail start-up clearly
``gunicorn.sock.create_sockets``  create / adopt the slot table instead of one socket
``Arbiter.setup``          re-read the settings after a HUP
``Arbiter.spawn_worker``   give the new worker its slot's sockets only
``Arbiter.kill_worker``    remember which workers were asked to leave; hold back
                           the SIGTERM of a worker handing over its slot
``Arbiter.manage_workers`` halt past the recovery threshold (main loop only);
                           fork the successors of workers leaving on their own;
                           drain slots before their workers stop, retire them
                           after; steer; fire ``prefork_on_ready``
``os.waitpid`` as seen     classify each reaped worker's exit status (Gunicorn's
  by ``gunicorn.arbiter``  ``child_exit`` hook is not given it)
fork (child side)          close the other slots' descriptors, mark the child
=========================  =====================================================

Each wrapper does nothing unless the arbiter runs our worker class.
"""

from __future__ import annotations

import functools
import os
import types
from collections.abc import Callable
from typing import Any

import gunicorn.arbiter
import gunicorn.sock

from .errors import PreforkError
from .master import Master, fail_startup

#: The plugin's state in this master process (inherited, and ignored, by workers).
current: Master | None = None
_installed = False


def _ours(arbiter: Any) -> Master | None:
    master = current
    if master is None or master.arbiter is not arbiter or master.pid != os.getpid():
        return None
    if not getattr(arbiter.worker_class, "gunicorn_prefork", False):
        return None
    return master


def _start(original: Callable[..., Any]) -> Callable[..., Any]:
    def start(self: Any) -> Any:
        global current
        if getattr(self.worker_class, "gunicorn_prefork", False):
            try:
                master = Master(self)
                master.prepare_start()
            except PreforkError as error:
                fail_startup(self.log, self.cfg, error)
            current = master
        return original(self)
    return start


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
            if master.defers_kill(pid, sig):
                return None
            master.note_kill(pid, sig)
        return original(self, pid, sig)
    return kill_worker


def _manage_workers(original: Callable[..., Any]) -> Callable[..., Any]:
    def manage_workers(self: Any) -> Any:
        master = _ours(self)
        if master is not None:
            master.halt_if_over_threshold()
            master.start_handovers()
            master.settle_drained()
            master.drain_surplus()
        result = original(self)
        if master is not None:
            master.settle_drained()
            master.check_ready()
        return result
    return manage_workers


class _ArbiterOs(types.ModuleType):
    """``os`` as the arbiter module sees it: ``waitpid`` also reports to the plugin.

    Only ``gunicorn.arbiter``'s global name ``os`` is replaced; everything else
    (and every other module) keeps the real ``os``.
    """

    def __init__(self) -> None:
        super().__init__("os")

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    @staticmethod
    def waitpid(pid: int, options: int) -> tuple[int, int]:
        wpid, status = os.waitpid(pid, options)
        master = current
        if wpid and master is not None and master.pid == os.getpid():
            master.on_reaped(wpid, status)
        return wpid, status


def _after_fork_in_child() -> None:
    if current is not None:
        current.after_fork_in_child()


def _wrap(owner: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    original = getattr(owner, name)
    setattr(owner, name, functools.wraps(original)(make(original)))


def install() -> None:
    """Patch Gunicorn once per process; later calls do nothing."""
    global _installed
    if _installed:
        return
    _installed = True
    arbiter = gunicorn.arbiter.Arbiter
    _wrap(arbiter, "start", _start)
    _wrap(arbiter, "setup", _setup)
    _wrap(arbiter, "spawn_worker", _spawn_worker)
    _wrap(arbiter, "kill_worker", _kill_worker)
    _wrap(arbiter, "manage_workers", _manage_workers)
    _wrap(gunicorn.sock, "create_sockets", _create_sockets)
    gunicorn.arbiter.os = _ArbiterOs()
    os.register_at_fork(after_in_child=_after_fork_in_child)
