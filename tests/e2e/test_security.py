"""Another user can never bind the port while the server runs (any socket options)."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.forked import in_forked_child
from tests.server import free_port, running, spread, wait_for

OTHER_USER = "gunicorn-prefork-test"
OPTION_SETS = [(), ("SO_REUSEADDR",), ("SO_REUSEPORT",), ("SO_REUSEADDR", "SO_REUSEPORT")]


def _other_uid() -> tuple[int, int]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create and become another user")
    try:
        entry = pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", OTHER_USER], check=True, capture_output=True)
        entry = pwd.getpwnam(OTHER_USER)
    return entry.pw_uid, entry.pw_gid


def _bind_as(uid: int, gid: int, port: int) -> list[str]:
    """Try every option set as ``uid`` in a forked child; return the ones that bound."""
    def attempts() -> str:  # in the child: drop to the other user, try, report
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        bound = []
        for options in OPTION_SETS:
            with socket.socket() as attempt:
                for name in options:
                    attempt.setsockopt(socket.SOL_SOCKET, getattr(socket, name), 1)
                try:
                    attempt.bind(("127.0.0.1", port))
                    attempt.listen()
                    bound.append("+".join(options) or "plain")
                except OSError:
                    pass
        return ",".join(bound)

    result = in_forked_child(attempts)
    return [name for name in result.split(",") if name]


def test_other_user_cannot_bind_while_running(tmp_path: Path) -> None:
    uid, gid = _other_uid()
    port = free_port()
    config = (f'worker_class = "gunicorn_prefork.Worker"\nbind = "127.0.0.1:{port}"\n'
              'workers = 2\n')
    with running(tmp_path, config=config) as server:
        server.wait_serving(port, 2)
        assert _bind_as(uid, gid, port) == []
        before = set(spread("127.0.0.1", port, 100))
        server.signal(signal.SIGHUP)
        wait_for(lambda: not before & set(spread("127.0.0.1", port, 40)), what="HUP done")
        assert _bind_as(uid, gid, port) == []
        server.signal(signal.SIGTTOU)
        wait_for(lambda: "retired slot" in server.log(), what="TTOU done")
        assert _bind_as(uid, gid, port) == []
