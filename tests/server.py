"""Start real ``gunicorn`` processes on 127.0.0.1 and talk to them like a user would.

Every wait here is bounded; a server left running is killed when its test ends.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar

HERE = Path(__file__).resolve().parent

# The console script, as users run it: ``python -m gunicorn`` re-executes itself on
# USR2 as ``python .../gunicorn/__main__.py``, which shadows the stdlib ``http``.
_SCRIPT = Path(sys.executable).parent / "gunicorn"
GUNICORN = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "gunicorn"]
APPS = HERE / "apps"

BASE_CONFIG = """\
# written by tests/server.py
control_socket_disable = True   # gunicorn 25+: no ~/.gunicorn/gunicorn.ctl between tests
graceful_timeout = 5
loglevel = "debug"
"""

#: Gunicorn 20.1 imports ``pkg_resources``, which setuptools >= 81 warns about on
#: stderr at every start; tests that read stderr must not see Gunicorn's own noise.
QUIET_GUNICORN_20 = "ignore:pkg_resources is deprecated:UserWarning"

def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def listeners(port: int) -> int:
    """Listening TCP sockets on ``port`` (IPv4 and IPv6), from /proc/net/tcp{,6}."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.05, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:  # not listening yet, connection reset while starting, ...
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def request(host: str, port: int, path: str = "/", timeout: float = 5.0,
            tls: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.0 request on a new connection; returns (status, headers, body)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    raw = socket.socket(family, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    conn: socket.socket = raw
    try:
        raw.connect((host, port))
        if tls:
            import ssl

            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            conn = context.wrap_socket(raw)
        conn.sendall(f"GET {path} HTTP/1.0\r\nHost: test\r\n\r\n".encode())
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        conn.close()
    if not chunks:
        raise ConnectionAbortedError("connection closed without a response")
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def spread(host: str, port: int, total: int, concurrency: int = 16) -> Counter[str]:
    """``total`` requests, each on its own connection; counts by serving worker pid."""
    def one(_: int) -> str:
        return request(host, port)[1]["x-worker-pid"]

    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        return Counter(pool.map(one, range(total)))


class Gunicorn:
    """One gunicorn master started from a config file written for the test."""

    def __init__(self, tmp: Path, config: str = "", args: list[str] | None = None,
                 env: Mapping[str, str] | None = None, app: str = "app:app",
                 config_arg: str | None = None) -> None:
        self.tmp = tmp
        self.config_path = tmp / "gunicorn.conf.py"
        self.config_path.write_text(BASE_CONFIG + textwrap.dedent(config))
        self.log_path = tmp / "gunicorn.log"
        self.args = args or []
        self.app = app
        self.config_arg = config_arg or str(self.config_path)
        self.env = dict(os.environ)
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(APPS), str(tmp), self.env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        # Tests rewrite the config and HUP within the same second: a cached .pyc with
        # the same size and mtime would be loaded instead of the new text.
        self.env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.env["PYTHONWARNINGS"] = QUIET_GUNICORN_20
        self.env.update(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    #: every server started in this test process (conftest prints their logs when a
    #: test fails: CI keeps nothing else)
    started: ClassVar[list[Gunicorn]] = []

    def start(self) -> Gunicorn:
        Gunicorn.started.append(self)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*GUNICORN, "-c", self.config_arg, *self.args, self.app],
            cwd=self.tmp, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True)
        return self

    def run_to_end(self, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a command that exits by itself (``--check-config``, ``--print-config``)
        and return its status, stdout and stderr."""
        return subprocess.run(
            [*GUNICORN, "-c", self.config_arg, *self.args, self.app],
            cwd=self.tmp, env=self.env, capture_output=True, text=True, timeout=timeout,
            check=False)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_exit(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def worker_pids(self) -> set[int]:
        """Live children of the master (workers, and a USR2 master if any)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return {int(pid) for pid in children.read_text().split()}
        except FileNotFoundError:
            return set()

    def usr2(self, slots: int) -> int:
        """USR2 to the master; once the new master adopted ``slots`` slots, its pid
        (the master's child that is none of its workers)."""
        workers = self.worker_pids()
        self.signal(signal.SIGUSR2)
        wait_for(lambda: f"adopted {slots} slot(s)" in self.log(), what="the new master")
        return (self.worker_pids() - workers).pop()

    def wait_serving(self, port: int, workers: int, host: str = "127.0.0.1",
                     timeout: float = 20.0, tls: bool = False, path: str = "/") -> None:
        """Until ``workers`` listeners exist on the port and as many workers answer
        (``GET path``)."""
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.proc.returncode}:\n{self.log()}")
            if listeners(port) != workers:
                return False
            try:
                served = {request(host, port, path, tls=tls)[1]["x-worker-pid"]
                          for _ in range(10 * workers)}
            except OSError:
                return False
            return len(served) == workers
        wait_for(ready, timeout, what=f"{workers} listeners, each with a worker, on {port}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the process group (workers of a killed master) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


def wait_children(pid: int, count: int, what: str = "") -> None:
    """Until process ``pid`` has ``count`` live children (a master's workers)."""
    wait_for(lambda: len(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
             == count, what=what or f"{count} children of {pid}")


@contextlib.contextmanager
def running(tmp: Path, **kwargs) -> Iterator[Gunicorn]:
    server = Gunicorn(tmp, **kwargs)
    try:
        yield server.start()
    finally:
        server.stop()
