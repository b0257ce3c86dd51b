"""Two servers behind HAProxy, every worker of one stopped: TCP check against /ready (issue 30).

    python -m benchmarks.scale_out                   # both checks, 10 s each, ~40 s
    python -m benchmarks.scale_out --check ready --duration 5

Two gunicorn-prefork servers on 127.0.0.1 (2 workers each, app:
``benchmarks/apps/spread_app.py``, each with ``prefork_status_bind``) behind a real
HAProxy (``/usr/sbin/haproxy`` or ``haproxy`` on PATH; config generated in a temp
dir, ``balance roundrobin``, ``option redispatch``, ``http-reuse safe``). A client opens
``--rate`` (200) new connections a second, one request each, for ``--duration`` (10)
seconds, through HAProxy, open loop: a slow answer does not delay the next request.
``STOP_AT`` (3 s) into the load every worker of server 1 is SIGSTOPped, and
SIGCONTed ``STOP_FOR`` (4 s) later. Checks (``--check``):

- ``tcp``: HAProxy's plain TCP check on the app port every 100 ms (``fall 1``): the
  master keeps the listening sockets, so the kernel completes the handshake and the
  check passes while no worker can answer;
- ``ready``: ``option httpchk`` GET /ready on the status port every 100 ms
  (``fall 1 rise 2``) and the agent (``agent-check``, every 100 ms, ``weight 16``).

Per run: requests, errors (no 200), requests over 1 s (connect to last byte),
p50/p99/max, and how many requests server 1 answered while its workers were
stopped (they waited for SIGCONT). The issue's baseline with the TCP check: 308 of
2,000 over 1 s; the target with /ready: 0 errors and at most max(10, a tenth of the
TCP run's) over 1 s.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .procfs import children
from .results import argument_parser, fmt_ms, md_header, md_row
from .servers import HOST, PREFORK, Server, free_port, gunicorn_command, gunicorn_version

CHECKS = ("tcp", "ready")
WORKERS = 2
STOP_AT, STOP_FOR = 3.0, 4.0
REQUEST_TIMEOUT = 20.0   # the client's, per request; HAProxy's timeout server is 15 s

HAPROXY_GLOBAL = """\
global
    maxconn 4096
    stats socket {stats} mode 600 level admin

defaults
    mode http
    timeout connect 1s
    timeout client 15s
    timeout server 15s
    timeout check 1s
    retries 3
    option redispatch

frontend web
    bind {host}:{port}
    default_backend app

backend app
    balance roundrobin
    http-reuse safe
"""
TCP_SERVER = "    server s{n} {host}:{app} check inter 100ms fall 1 rise 2\n"
READY_BACKEND = ("    option httpchk\n"
                 "    http-check send meth GET uri /ready ver HTTP/1.1 hdr Host status\n"
                 "    http-check expect status 200\n")
READY_SERVER = ("    server s{n} {host}:{app} check port {status} inter 100ms fall 1 rise 2 "
                "weight 16 agent-check agent-port {status} agent-inter 100ms "
                'agent-send "agent\\n"\n')


def haproxy_path() -> str | None:
    return shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")


def haproxy_config(check: str, port: int, stats: Path, servers: Sequence[tuple[int, int]]
                   ) -> str:
    """HAProxy's config: frontend on ``port``, one server per (app port, status port)."""
    text = HAPROXY_GLOBAL.format(stats=stats, host=HOST, port=port)
    if check == "ready":
        text += READY_BACKEND
    line = READY_SERVER if check == "ready" else TCP_SERVER
    for n, (app, status) in enumerate(servers, 1):
        text += line.format(n=n, host=HOST, app=app, status=status)
    return text


def haproxy_servers(stats: Path) -> dict[str, tuple[int, int]]:
    """``show servers state``: {server name: (op state (2 = up), weight)}."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(2)
        conn.connect(str(stats))
        conn.sendall(b"show servers state app\n")
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    found = {}
    for line in data.decode().splitlines():
        fields = line.split()
        if len(fields) > 7 and not line.startswith("#") and fields[1] == "app":
            found[fields[3]] = (int(fields[5]), int(fields[7]))
    return found


def status_ready(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=2) as conn:
        conn.sendall(b"GET /ready HTTP/1.0\r\nHost: bench\r\n\r\n")
        return b" 200 " in conn.recv(64).split(b"\r\n", 1)[0]


@dataclass
class Answer:
    start: float
    end: float
    status: int  # 0: no HTTP answer
    pid: str = ""
    error: str = ""


@dataclass
class Run:
    check: str
    answers: list[Answer] = field(default_factory=list)
    stopped_pids: set[str] = field(default_factory=set)
    log_dir: str = ""

    @property
    def errors(self) -> int:
        return sum(1 for a in self.answers if a.status != 200)

    def over(self, seconds: float) -> int:
        return sum(1 for a in self.answers if a.end - a.start > seconds)

    def percentile_ms(self, percentile: float) -> float | None:
        values = sorted(a.end - a.start for a in self.answers if a.status == 200)
        if not values:
            return None
        rank = min(max(1, math.ceil(len(values) * percentile / 100)), len(values))
        return values[rank - 1] * 1000

    def by_stopped_server(self) -> int:
        """Requests answered by the stopped server's workers that had to wait for them."""
        return sum(1 for a in self.answers if a.pid in self.stopped_pids
                   and a.end - a.start > 1)


async def _one(port: int, at: float, answers: list[Answer]) -> None:
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    start = time.monotonic()
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port),
                                                REQUEST_TIMEOUT)
        writer.write(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), REQUEST_TIMEOUT - (time.monotonic() - start))
        end = time.monotonic()
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        status = int(head[0].split()[1]) if head[0].startswith("HTTP/") else 0
        pid = next((line.split(":", 1)[1].strip() for line in head[1:]
                    if line.lower().startswith("x-worker-pid:")), "")
        answers.append(Answer(start, end, status, pid, "" if status else f"{data[:60]!r}"))
    except (OSError, asyncio.TimeoutError, ValueError, IndexError) as exc:
        answers.append(Answer(start, time.monotonic(), 0, error=type(exc).__name__))
    finally:
        if writer is not None:
            writer.close()


async def _load(port: int, rate: float, total: int, t0: float) -> list[Answer]:
    answers: list[Answer] = []
    await asyncio.gather(*(_one(port, t0 + i / rate, answers) for i in range(total)))
    return answers


def run_once(check: str, haproxy: str, rate: float, duration: float) -> Run:
    run = Run(check)
    run_dir = Path(tempfile.mkdtemp(prefix=f"scale-out-{check}-"))
    run.log_dir = str(run_dir)
    ports = [(free_port(), free_port()) for _ in range(2)]
    servers = []
    try:
        for n, (app, status) in enumerate(ports, 1):
            config = run_dir / f"gunicorn-{n}.conf.py"
            config.write_text("control_socket_disable = True\nprefork_recover_threshold = 0\n"
                              f'prefork_status_bind = "{HOST}:{status}"\n')
            server = Server(gunicorn_command(PREFORK, WORKERS, app, "spread_app:app",
                                             config=config), run_dir / f"gunicorn-{n}.log")
            servers.append(server)
            server.start()
        for server, (app, status) in zip(servers, ports):
            server.wait_serving(app, WORKERS, deadline_s=30)
            _wait(lambda status=status: status_ready(status), 15, f"/ready on {status}")
        front = free_port()
        stats = run_dir / "haproxy.sock"
        (run_dir / "haproxy.cfg").write_text(haproxy_config(check, front, stats, ports))
        with Server([haproxy, "-f", str(run_dir / "haproxy.cfg"), "-db"],
                    run_dir / "haproxy.log", apps=None, stop_wait_s=5) as proxy:
            _wait(lambda: stats.exists() and all(
                state == 2 for state, _ in haproxy_servers(stats).values()), 10,
                "HAProxy's servers up")
            time.sleep(0.5)  # a few agent answers
            workers = children(servers[0].pid)
            run.stopped_pids = {str(pid) for pid in workers}
            t0 = time.monotonic() + 0.2

            def stop_server_1() -> None:
                time.sleep(max(0.0, t0 + STOP_AT - time.monotonic()))
                for pid in workers:
                    os.kill(pid, signal.SIGSTOP)
                time.sleep(STOP_FOR)
                for pid in workers:
                    os.kill(pid, signal.SIGCONT)

            stopper = threading.Thread(target=stop_server_1, daemon=True)
            stopper.start()
            try:
                run.answers = asyncio.run(_load(front, rate, int(rate * duration), t0))
            finally:
                stopper.join(STOP_AT + STOP_FOR + 5)
                for pid in workers:  # never leave one stopped
                    os.kill(pid, signal.SIGCONT)
            if proxy.exited.is_set():
                raise RuntimeError(f"HAProxy exited early; see {proxy.log_path}")
    finally:
        for server in servers:
            server.stop()
    return run


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def table(runs: Sequence[Run]) -> str:
    lines = [md_header(["check", "requests", "errors", "> 1 s", "p50", "p99", "max",
                        "waited for server 1"])]
    for run in runs:
        lines.append(md_row([
            run.check, f"{len(run.answers):,}", str(run.errors), str(run.over(1.0)),
            *(fmt_ms(v) if (v := run.percentile_ms(p)) is not None else "n/a"
              for p in (50, 99, 100)),
            str(run.by_stopped_server())]))
    return "\n".join(lines)


def verdict(runs: Sequence[Run]) -> str | None:
    """The issue's target for the /ready run, if both ran."""
    tcp = next((r for r in runs if r.check == "tcp"), None)
    ready = next((r for r in runs if r.check == "ready"), None)
    if ready is None:
        return None
    limit = max(10, tcp.over(1.0) // 10) if tcp is not None else 10
    met = ready.errors == 0 and ready.over(1.0) <= limit
    return (f"target (ready: 0 errors, > 1 s <= {limit}): "
            f"{'met' if met else 'NOT met'} ({ready.errors} errors, {ready.over(1.0)} > 1 s)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--check", choices=(*CHECKS, "both"), default="both")
    parser.add_argument("--duration", type=float, default=10.0,
                        help="seconds of load (at least STOP_AT + STOP_FOR = 7)")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="new connections a second")
    args = parser.parse_args(argv)
    if args.duration < STOP_AT + STOP_FOR:
        parser.error(f"--duration must be at least {STOP_AT + STOP_FOR:g}")
    haproxy = haproxy_path()
    if haproxy is None:
        print("haproxy is not installed (apt-get install -y haproxy)", file=sys.stderr)
        return 2
    checks = CHECKS if args.check == "both" else (args.check,)
    print(f"gunicorn {gunicorn_version()}, Python {sys.version.split()[0]}, 2 servers x "
          f"{WORKERS} workers behind HAProxy, {args.rate:g} new connections/s for "
          f"{args.duration:g}s; server 1's workers SIGSTOPped from {STOP_AT:g}s for "
          f"{STOP_FOR:g}s", flush=True)
    runs = []
    for check in checks:
        run = run_once(check, haproxy, args.rate, args.duration)
        runs.append(run)
        print(f"[{check}] {len(run.answers)} requests, {run.errors} errors, "
              f"{run.over(1.0)} > 1 s, first errors "
              f"{[a.error or a.status for a in run.answers if a.status != 200][:3]}, "
              f"log {run.log_dir}", file=sys.stderr, flush=True)
    print(table(runs))
    if (said := verdict(runs)) is not None:
        print(said)
    return 0


if __name__ == "__main__":
    sys.exit(main())
