"""Issue 19's adversarial checks, ours against ``-k gevent`` in the same run.

``python -m benchmarks.master_checks CHECK [CHECK...]`` with CHECK one of:

===========  =====================================================================
``idle``     an idle master for ``--idle`` s: its CPU seconds and wake-ups (context
             switches of all its threads)
``timeout``  ``--timeout 3``, idle 32 s, then a handler spinning 12 s without yielding:
             seconds until the client's connection ends (Gunicorn kills the worker)
``usr2``     ``--rounds`` times USR2 then TERM to the old master: seconds from the old
             master's exit to the new one's promotion (its pidfile renamed)
``tls``      wrk over HTTPS, ``Connection: close``, c32 for 8 s, with no stall and with
             one worker SIGSTOPped 3 s: requests and socket errors
``nofile``   ``nofile`` 64 per process, 150 clients x 2 requests of 2 s: outcomes
``overlap``  wrk (close, ``--conns``) through a USR2 overlap of 6 s: each master's stall
             watch summary (stalls, moved connections)
===========  =====================================================================

Load goes to 127.0.0.1 only, bounded in time and count. Each line names the
Gunicorn and Python it ran on; run it from the venv to check (the interpreter's
build decides the ``timeout``/``usr2`` results, see ``../shared/design``).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .masterlog import stall_summary
from .procfs import alive, children, cpu_seconds
from .servers import GEVENT, GUNICORN, HOST, PREFORK, Server, free_port, gunicorn_version
from .wrk import parse_wrk, socket_errors_text, wrk_command

TEST_APPS = Path(__file__).resolve().parent.parent / "tests" / "apps"
VARIANTS = {"prefork": PREFORK, "gevent": GEVENT}


def _say(check: str, variant: str, text: str) -> None:
    print(f"{check:8} {variant:8} gunicorn {gunicorn_version()} "
          f"python {platform.python_version()}: {text}", flush=True)


@contextmanager
def _server(tmp: Path, variant: str, port: int, *extra: str, app: str = "app:app",
            config: str = "", workers: int = 2) -> Iterator[Server]:
    conf = tmp / f"{variant}.conf.py"
    conf.write_text(config + "control_socket_disable = True\n")
    command = [str(GUNICORN), "-c", str(conf), *VARIANTS[variant], "-w", str(workers),
               "-b", f"{HOST}:{port}", *extra, app]
    server = Server(command, tmp / f"{variant}.log", apps=TEST_APPS, cwd=tmp)
    with server:
        server.wait_serving(port, workers)
        yield server


def _switches(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
                if "ctxt_switches" in line:  # voluntary and nonvoluntary
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def check_idle(tmp: Path, variant: str, args: argparse.Namespace) -> None:
    port = free_port()
    with _server(tmp, variant, port) as server:
        time.sleep(2)
        cpu, switches = cpu_seconds(server.pid), _switches(server.pid)
        time.sleep(args.idle)
        cpu, switches = cpu_seconds(server.pid) - cpu, _switches(server.pid) - switches
    _say("idle", variant, f"master CPU {cpu:.2f} s, {switches / args.idle:.0f} wake-ups/s "
         f"over {args.idle:g} s idle")


def check_timeout(tmp: Path, variant: str, args: argparse.Namespace) -> None:
    port = free_port()
    with _server(tmp, variant, port, "--timeout", "3", app="app:blocking_app") as server:
        time.sleep(args.idle_before_timeout)
        started = time.monotonic()
        try:
            answer = _get(port, "/block?12", timeout=30)
        except OSError as exc:
            answer = type(exc).__name__
        took = time.monotonic() - started
        killed = "WORKER TIMEOUT" in server.log()
    _say("timeout", variant, f"connection ended after {took:.1f} s ({answer}); "
         f"worker {'killed' if killed else 'NOT killed'} (timeout 3 s)")


def _get(port: int, path: str, timeout: float) -> str:
    with socket.create_connection((HOST, port), timeout=timeout) as conn:
        conn.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = conn.recv(100)
    return data.split(b"\r\n")[0].decode() if data else "closed"


def check_usr2(tmp: Path, variant: str, args: argparse.Namespace) -> None:
    port = free_port()
    pidfile = tmp / f"{variant}.pid"
    config = f'pidfile = "{pidfile}"\n'
    waits: list[float] = []
    missed = gone_masters = 0
    with _server(tmp, variant, port, config=config) as server:
        master = server.pid
        try:
            for _ in range(args.rounds):
                if not alive(master):
                    gone_masters += 1
                    break
                os.kill(master, signal.SIGUSR2)
                second = Path(f"{pidfile}.2")
                if not _wait(lambda: _pid_in(second) is not None, 20):  # noqa: B023
                    missed += 1
                    break
                new = int(second.read_text())
                time.sleep(2.5)  # its workers boot
                os.kill(master, signal.SIGTERM)
                if not _wait(lambda: not alive(master), 30):  # noqa: B023
                    missed += 1
                    break
                gone = time.monotonic()
                if _wait(lambda: _pid_in(pidfile) == new, 15):  # noqa: B023
                    waits.append(time.monotonic() - gone)
                else:
                    missed += 1
                master = new
        finally:
            with contextlib.suppress(OSError):
                os.kill(master, signal.SIGTERM)
            _wait(lambda: not alive(master), 20)
    worst = f"{max(waits):.2f}" if waits else "-"
    died = ", the master died" if gone_masters else ""
    _say("usr2", variant, f"promoted {len(waits)} of {args.rounds} (missed {missed}{died}); "
         f"slowest promotion {worst} s after the old master exited")


def _pid_in(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _wait(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    return False


def _wrk(port: int, seconds: int, conns: int, scheme: str = "http") -> subprocess.Popen[str]:
    command = wrk_command(port, duration=seconds, conns=conns, threads=2,
                          headers=["Connection: close"], timeout=10, scheme=scheme)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _wrk_text(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate(timeout=60)
    result = parse_wrk(out)
    non2xx = f", non-2xx {result.non_2xx_3xx}" if result.non_2xx_3xx else ""
    return (f"{result.requests if result.requests is not None else '?'} requests, "
            f"{result.rps or 0:.0f} req/s, "
            f"errors: {socket_errors_text(result) or 'none'}{non2xx}")


def check_tls(tmp: Path, variant: str, args: argparse.Namespace) -> None:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "1", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
    config = f'certfile = "{cert}"\nkeyfile = "{key}"\n'
    for stop in (False, True):
        port = free_port()
        ask = _tls_worker_of
        conf = tmp / f"{variant}.tls.conf.py"
        conf.write_text(config + "control_socket_disable = True\n")
        command = [str(GUNICORN), "-c", str(conf), *VARIANTS[variant], "-w", "2",
                   "-b", f"{HOST}:{port}", "app:app"]
        with Server(command, tmp / f"{variant}.tls.log", apps=TEST_APPS, cwd=tmp) as server:
            server.wait_serving(port, 2, ask=ask)
            load = _wrk(port, 8, 32, "https")
            if stop:
                time.sleep(2)
                victim = children(server.pid)[0]
                os.kill(victim, signal.SIGSTOP)
                time.sleep(3)
                os.kill(victim, signal.SIGCONT)
            text = _wrk_text(load)
        stalls = stall_summary(server.log()) if variant == "prefork" else None
        server_stalls = "" if stalls is None else f"; stalls {stalls[0]}, moved {stalls[1]}"
        _say("tls", variant, f"{'one worker stopped 3 s' if stop else 'no stall'}: "
             f"{text}{server_stalls}")


def _tls_worker_of(port: int) -> str:
    import ssl

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((HOST, port), timeout=2) as raw:
        with context.wrap_socket(raw) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
    for line in data.decode("latin-1").split("\r\n"):
        if line.lower().startswith("x-worker-pid:"):
            return line.split(":", 1)[1].strip()
    raise ValueError("no X-Worker-Pid")


def check_nofile(tmp: Path, variant: str, args: argparse.Namespace) -> None:
    port = free_port()
    config = "import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))\n"

    def one(_: int) -> str:
        try:
            return _get(port, "/sleep?2", timeout=60)
        except OSError as exc:
            return type(exc).__name__

    with _server(tmp, variant, port, config=config):
        with concurrent.futures.ThreadPoolExecutor(150) as pool:
            outcomes = collections.Counter(pool.map(one, range(300)))
    _say("nofile", variant, ", ".join(f"{n} {what}" for what, n in outcomes.most_common()))


def check_overlap(tmp: Path, variant: str, args: argparse.Namespace) -> None:
    if variant != "prefork":
        return
    port = free_port()
    with _server(tmp, variant, port, "--log-level", "info") as server:
        load = _wrk(port, 12, args.conns)
        time.sleep(2)
        before = set(children(server.pid))
        server.signal(signal.SIGUSR2)
        _wait(lambda: len(set(children(server.pid)) - before) == 1, 10)
        new_master = (set(children(server.pid)) - before).pop()
        time.sleep(6)
        server.signal(signal.SIGTERM)
        server.exited.wait(20)
        text = _wrk_text(load)
        log = server.log()
        os.kill(new_master, signal.SIGTERM)
        _wait(lambda: not alive(new_master), 20)
    log = server.log()
    per_master = {}
    for pid in (server.pid, new_master):
        lines = "\n".join(line for line in log.splitlines() if f"[{pid}]" in line)
        per_master[pid] = stall_summary(lines)
    _say("overlap", variant, f"{text}; old master (stalls, moved) {per_master[server.pid]}, "
         f"new master {per_master[new_master]}")


CHECKS = {"idle": check_idle, "timeout": check_timeout, "usr2": check_usr2,
          "tls": check_tls, "nofile": check_nofile, "overlap": check_overlap}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checks", nargs="+", choices=sorted(CHECKS))
    parser.add_argument("--variants", default="prefork,gevent")
    parser.add_argument("--idle", type=float, default=10.0, help="idle check seconds (10)")
    parser.add_argument("--idle-before-timeout", type=float, default=32.0)
    parser.add_argument("--rounds", type=int, default=10, help="usr2 rounds (10)")
    parser.add_argument("--conns", type=int, default=64, help="overlap: wrk connections (64)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="master-checks-") as tmp:
        for check in args.checks:
            for variant in args.variants.split(","):
                CHECKS[check](Path(tmp), variant, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
