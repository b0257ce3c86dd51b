"""The servers under test: their command lines, starting them, probing them, stopping them.

A server runs in its own session (so its process group is its master's pid), with its
output in a log file and an app directory put first on ``PYTHONPATH``. It is ready when
every worker has answered on a fresh connection; it is stopped with TERM to the master,
a bounded wait, then SIGKILL to whatever is left of its process group. Everything here
talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from .procfs import group_members

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parent.parent
#: The apps of benchmarks/apps/ (the lifecycle tool uses tests/apps/ instead).
APPS_DIR = ROOT / "benchmarks" / "apps"
#: The console script next to the interpreter, never ``python -m gunicorn``, which
#: breaks USR2.
GUNICORN = Path(sys.executable).parent / "gunicorn"

#: Worker options of the variants the tools compare, by name.
PREFORK = ("-k", "gunicorn_prefork.Worker")
GEVENT = ("-k", "gevent")
REUSEPORT = ("-k", "gevent", "--reuse-port")


def batch_config(batch: int) -> str:
    """A config file's text whose hook sets our worker's accept batch (a module
    constant of ``gunicorn_prefork.worker.slot_server``)."""
    return ("def post_worker_init(worker):\n"
            "    from gunicorn_prefork.worker import slot_server\n"
            f"    slot_server.ACCEPT_BATCH = {batch}\n")


def gunicorn_version() -> str:
    return importlib.metadata.version("gunicorn")


def reuseport_skip_reason() -> str | None:
    """Why ``--reuse-port`` is not worth measuring with this Gunicorn, or None."""
    version = gunicorn_version()
    if int(version.split(".")[0]) < 24:
        return f"Gunicorn {version} < 24: --reuse-port shares one socket, no per-worker binds"
    return None


def gunicorn_command(options: Sequence[str], workers: int, port: int, app: str,
                     *extra: str, config: Path | None = None) -> list[str]:
    """``gunicorn [-c config] OPTIONS -w N -b 127.0.0.1:PORT EXTRA APP``."""
    command = [str(GUNICORN)]
    if config is not None:
        command += ["-c", str(config)]
    return [*command, *options, "-w", str(workers), "-b", f"{HOST}:{port}", *extra, app]


# --- probes -------------------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    """A port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def http_get(port: int, path: str = "/", method: str = "GET", timeout: float = 5.0) -> bytes:
    """The whole HTTP/1.0 response to one request on a fresh connection."""
    with socket.create_connection((HOST, port), timeout=timeout) as conn:
        conn.sendall(f"{method} {path} HTTP/1.0\r\nHost: bench\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return data


def worker_of(port: int, timeout: float = 5.0) -> str:
    """The ``X-Worker-Pid`` of whoever answers one request on a fresh connection."""
    data = http_get(port, timeout=timeout)
    for line in data.decode("latin-1").split("\r\n"):
        if line.lower().startswith("x-worker-pid:"):
            return line.split(":", 1)[1].strip()
    raise ValueError(f"no X-Worker-Pid in {data[:200]!r}")


def tail(path: Path, lines: int = 15) -> str:
    """The last ``lines`` lines of a log ("" if unreadable)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- one server ---------------------------------------------------------------------------


class Server:
    """A server master in its own session; :meth:`stop` ends its whole process group.

    A thread waits for the master, so its exit is seen at once (:attr:`exited`,
    :attr:`exit_time`, then :meth:`on_exit`, which subclasses may extend). Used as a
    context manager it starts on entry and stops on exit.
    """

    def __init__(self, command: list[str], log_path: Path, *, apps: Path | None = APPS_DIR,
                 cwd: Path | None = None, append: bool = False,
                 stop_wait_s: float = 15.0) -> None:
        self.command = command
        self.log_path = log_path
        self.apps = apps
        self.cwd = cwd
        self.append = append
        self.stop_wait_s = stop_wait_s
        self.exited = threading.Event()
        self.exit_time: float | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        env = dict(os.environ)
        if self.apps is not None:
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(self.apps), os.environ.get("PYTHONPATH", "")) if p)
        with self.log_path.open("ab" if self.append else "wb") as log:
            self.proc = subprocess.Popen(
                self.command, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        threading.Thread(target=self._wait, daemon=True).start()

    def _wait(self) -> None:
        assert self.proc is not None
        self.proc.wait()  # blocks in waitpid without the GIL: the exit is seen at once
        self.exit_time = time.monotonic()
        self.on_exit()
        self.exited.set()

    def on_exit(self) -> None:
        """Called in the waiting thread right after the master exited."""

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def status(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    def signal(self, sig: int) -> None:
        """``sig`` to the master, unless it has exited."""
        if not self.exited.is_set():
            os.kill(self.pid, sig)

    def wait_serving(self, port: int, workers: int,
                     ask: Callable[[int], str] = lambda port: worker_of(port, timeout=2.0),
                     deadline_s: float = 30.0) -> None:
        """Until ``workers`` different workers answered on fresh connections; ``ask(port)``
        makes one request and returns who answered."""
        heard: set[str] = set()
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.exited.is_set():
                raise RuntimeError(f"server exited with status {self.status()} before "
                                   f"serving; see {self.log_path}:\n{tail(self.log_path)}")
            try:
                heard.add(ask(port))
            except (OSError, RuntimeError, ValueError):
                time.sleep(0.1)
                continue
            if len(heard) >= workers:
                return
        raise RuntimeError(f"only {len(heard)} of {workers} workers answered within "
                           f"{deadline_s:.0f}s; see {self.log_path}:\n{tail(self.log_path)}")

    def stop(self, wait_s: float | None = None) -> None:
        """TERM to the master, a bounded wait (``stop_wait_s`` by default), then SIGKILL
        to what is left of its group."""
        if self.proc is None:
            return
        if wait_s is None:
            wait_s = self.stop_wait_s
        group = self.pid
        if not self.exited.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.kill(group, signal.SIGTERM)
            if not self.exited.wait(wait_s):
                print(f"  server {group} ignored TERM for {wait_s:.0f}s; killing its group",
                      file=sys.stderr)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(group, signal.SIGKILL)
        self.exited.wait(10)
        deadline = time.monotonic() + 10
        while (left := group_members(group)) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
