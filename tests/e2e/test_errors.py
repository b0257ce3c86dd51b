"""Start-up errors: one clear line, exit status 1, quickly, and no respawn loop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.server import free_port, listeners, running

PREFORK = 'worker_class = "gunicorn_prefork.Worker"\n'


def _fails_fast(server_kwargs: dict, tmp: Path, within: float = 5.0) -> str:
    with running(tmp, **server_kwargs) as server:
        started = time.monotonic()
        status = server.wait_exit(15)
        took = time.monotonic() - started
        log = server.log()
    assert status == 1, log
    assert took < within, (took, log)
    assert "Traceback" not in log, log
    assert "Booting worker" not in log, log
    return log


def test_unix_bind_with_reuseport_is_refused(tmp_path: Path) -> None:
    log = _fails_fast({"config": PREFORK + f'bind = "unix:{tmp_path}/g.sock"\n'}, tmp_path)
    assert "bind unix:" in log and "prefork_reuseport = False" in log


def test_port_in_use_fails_within_two_seconds(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", port))
        other.listen()
        log = _fails_fast({"config": PREFORK + f'bind = "127.0.0.1:{port}"\n'}, tmp_path,
                          within=2.0)
    assert f"cannot listen on 127.0.0.1:{port}: the address is already in use" in log


@pytest.mark.parametrize("binds", [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"),
                                   ("[::]", "0.0.0.0")], ids=["twice", "v4-wildcard", "v6-v4"])
def test_an_address_bound_twice_is_named_as_our_own(tmp_path: Path,
                                                    binds: tuple[str, str]) -> None:
    """Not "in use by another process": it is this server's own bind."""
    if binds[0] == "[::]" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    port = free_port()
    bind = [f"{host}:{port}" for host in binds]
    log = _fails_fast({"config": PREFORK + f"bind = {bind!r}\n"}, tmp_path, within=2.0)
    assert "this server already listens there through its bind" in log, log
    assert "another process" not in log, log


def test_port_held_by_another_reuseport_server_is_refused(tmp_path: Path) -> None:
    """Same user, SO_REUSEPORT set: we must not silently join and share its traffic."""
    port = free_port()
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", port))
        other.listen()
        log = _fails_fast({"config": PREFORK + f'bind = "127.0.0.1:{port}"\n'}, tmp_path,
                          within=2.0)
    assert "already in use" in log


@pytest.mark.parametrize("source", ["file", "env"])
def test_bad_setting_value(tmp_path: Path, source: str) -> None:
    port = free_port()
    config = PREFORK + f'bind = "127.0.0.1:{port}"\n'
    env = {}
    if source == "file":
        config += 'prefork_reuseport = "maybe"\n'
    else:
        env["GUNICORN_PREFORK_REUSEPORT"] = "maybe"
    log = _fails_fast({"config": config, "env": env}, tmp_path)
    lines = [line for line in log.splitlines() if "prefork_reuseport" in line]
    assert len(lines) == 1, log
    assert "invalid prefork_reuseport = 'maybe'" in lines[0]
    assert ("GUNICORN_PREFORK_REUSEPORT" in lines[0]) == (source == "env")
    assert listeners(port) == 0


def test_bad_logger_path(tmp_path: Path) -> None:
    log = _fails_fast({"config": PREFORK + 'bind = "127.0.0.1:0"\n'
                       'prefork_logger = "no_such_module.log"\n'}, tmp_path)
    assert "invalid prefork_logger = 'no_such_module.log'" in log


def test_systemd_socket_without_reuseport(tmp_path: Path) -> None:
    """LISTEN_FDS hands over one plain socket: it cannot be split per worker."""
    port = free_port()
    (tmp_path / "gunicorn.conf.py").write_text(
        "control_socket_disable = True\n" + PREFORK + f'bind = "127.0.0.1:{port}"\n')
    launcher = textwrap.dedent(f"""
        import os, socket, sys
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", {port}))
        s.listen()
        if s.fileno() != 3:
            os.dup2(s.fileno(), 3)
        os.set_inheritable(3, True)
        os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))
        script = os.path.join(os.path.dirname(sys.executable), "gunicorn")
        os.execv(script, [script, "-c", "gunicorn.conf.py", "app:app"])
    """)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent / "apps"))
    out = subprocess.run([sys.executable, "-c", launcher], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=20, check=False)
    log = out.stdout + out.stderr
    assert out.returncode == 1, log
    assert "has no SO_REUSEPORT" in log and "ReusePort=yes" in log, log
    assert "Traceback" not in log


def test_the_readme_shows_the_error_lines_as_they_are_logged(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    shown = [line.strip() for line in readme.splitlines()
             if line.strip().startswith("[ERROR]") and " Error: " in line]
    assert shown, "no error line examples in the README"
    log = _fails_fast({"config": PREFORK + f'bind = "unix:{tmp_path}/g.sock"\n'}, tmp_path)
    logged = next(line for line in log.splitlines() if "bind unix:" in line)
    prefix = logged[logged.index("[ERROR]"):logged.index("bind unix:")]
    assert prefix == "[ERROR] Error: "
    for line in shown:
        assert line.startswith(prefix), line
