"""A worker stuck in CPU-bound Python, and what happens to the requests it holds (issue 29).

    python -m benchmarks.stuck                            # both variants and modes, ~1 min
    python -m benchmarks.stuck --seconds 4 --modes close --repeats 1
    python -m benchmarks.stuck --timeout-scenario         # --timeout 3, one /spin?10
    python -m benchmarks.stuck --gunicorn-args "--timeout 3 --keep-alive 5"

Gunicorn with ``--workers`` (2) workers on 127.0.0.1, app ``benchmarks/apps/stuck_app.py``.
``--clients`` (32) threads send ``GET /fast?ID`` (a unique id per request) for
``--seconds`` (9), each from a hand-written HTTP/1.1 request on a plain socket (10 s
timeout), while a side client sends ``GET /spin?SPIN`` (``--spin``, 1.5 s of CPU without
yielding: the loop of the worker that takes it is stuck) on a fresh connection at 1 s and
then every ``--every`` (2) s. Modes: ``keepalive`` (a thread keeps its connection and
reconnects only when the server closes it: ``Connection: close`` or EOF) and ``close``
(``Connection: close``, a new connection per request). A fast request's latency runs
from its connect (if it needed one) to the end of its answer.

The app logs the id of each fast request it runs (``STUCK_LOG``); after the server
stopped the log is compared with what the clients saw: **run twice** (an id logged more
than once), **lost** (answered but never logged, or sent but neither answered nor
failed), **run, unanswered** (logged, but the client got an error instead).

``--timeout-scenario`` (issue 29's second target: ours' errors <= stock's / 5): Gunicorn
``--timeout 3``, keep-alive clients, a single ``/spin?10`` at 1 s, 8 s of load; the
stuck worker is SIGABRTed at its timeout. ``--stuck-in c`` spins in one C call instead
(``/cspin``): a Python spin runs Gunicorn's SIGABRT handler at once (the worker then
answers what it holds with ``Connection: close`` and exits), a C one does not, so the
worker is SIGKILLed a few seconds later and its connections reset.

Variants: ``prefork`` (``-k gunicorn_prefork.Worker``) and ``gevent`` (stock), interleaved
over ``--repeats`` with the order rotating; the table shows medians.
"""

from __future__ import annotations

import shlex
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .results import argument_parser, fmt_ms, interleaved, md_header, md_row, subset
from .servers import (
    GEVENT,
    HOST,
    PREFORK,
    Server,
    free_port,
    gunicorn_command,
    gunicorn_version,
    http_get,
)

VARIANTS = {"prefork": PREFORK, "gevent": GEVENT}
MODES = ("keepalive", "close")
CLIENT_TIMEOUT = 10.0
FIRST_SPIN = 1.0
SLOW = 1.0


class Cut(Exception):
    """The server closed the connection before a whole response."""


@dataclass
class Tally:
    """What one client thread saw (merged after the run; no locks while it runs)."""

    sent: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # answered fast requests, s
    errors: Counter[str] = field(default_factory=Counter)
    workers: Counter[str] = field(default_factory=Counter)  # answers by X-Worker-Pid


@dataclass
class Run:
    variant: str
    mode: str
    repeat: int
    sent: int = 0
    answered: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    over_1s: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    run_twice: int = 0
    lost: int = 0
    run_unanswered: int = 0
    spins: str = ""  # "answered/sent" or the spins' errors
    workers: dict[str, int] = field(default_factory=dict)
    log_dir: str = ""


def exchange(conn: socket.socket, request: bytes) -> tuple[int, bool, str]:
    """Send one request and read its answer: (status, server closes, X-Worker-Pid)."""
    conn.sendall(request)
    data = b""
    while (end := data.find(b"\r\n\r\n")) < 0:
        chunk = conn.recv(4096)
        if not chunk:
            raise Cut
        data += chunk
    head = data[:end].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    length, close, pid = 0, head[0].startswith("HTTP/1.0"), ""
    for line in head[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "content-length":
            length = int(value)
        elif name == "connection":
            close = value.lower() == "close"
        elif name == "x-worker-pid":
            pid = value
    got = len(data) - end - 4
    while got < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise Cut
        got += len(chunk)
    return status, close, pid


def error_kind(error: BaseException) -> str:
    if isinstance(error, Cut):
        return "cut"
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, (ConnectionResetError, BrokenPipeError)):
        return "reset"
    if isinstance(error, socket.timeout):  # TimeoutError on 3.10+
        return "timeout"
    return type(error).__name__


def client(port: int, keepalive: bool, deadline: float, index: int, tally: Tally) -> None:
    conn: socket.socket | None = None
    number = 0
    close_header = "" if keepalive else "Connection: close\r\n"
    while time.monotonic() < deadline:
        number += 1
        rid = f"{index}-{number}"
        request = f"GET /fast?{rid} HTTP/1.1\r\nHost: bench\r\n{close_header}\r\n".encode()
        tally.sent.append(rid)
        start = time.perf_counter()
        try:
            if conn is None:
                conn = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT)
            status, close, pid = exchange(conn, request)
        except (OSError, Cut, ValueError, IndexError) as error:
            tally.failed.append(rid)
            tally.errors[error_kind(error)] += 1
            if conn is not None:
                conn.close()
                conn = None
            if isinstance(error, ConnectionRefusedError):
                time.sleep(0.01)
            continue
        if status == 200:
            tally.answered.append(rid)
            tally.latencies.append(time.perf_counter() - start)
            tally.workers[pid] += 1
        else:
            tally.failed.append(rid)
            tally.errors[f"status {status}"] += 1
        if close or not keepalive:
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def spinner(port: int, path: str, seconds: float, outcomes: list[str]) -> None:
    """One spin on a fresh connection: "ok", "status N", "cut" (no answer) or an error."""
    try:
        head = http_get(port, f"{path}?{seconds:g}", timeout=seconds + CLIENT_TIMEOUT)[:12].split()
        outcomes.append("cut" if len(head) < 2 else "ok" if head[1] == b"200"
                        else f"status {head[1].decode('latin-1')}")
    except OSError as error:
        outcomes.append(error_kind(error))


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest rank, in ms."""
    if not ordered:
        return None
    return 1000 * ordered[max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))]


def run_once(variant: str, mode: str, repeat: int, args: Sequence[str], *, seconds: float,
             spin: float, spin_at: Sequence[float], clients: int, workers: int,
             spin_path: str = "/spin") -> Run:
    run = Run(variant, mode, repeat)
    run_dir = Path(tempfile.mkdtemp(prefix=f"stuck-{variant}-{mode}-"))
    run.log_dir = str(run_dir)
    config, app_log = run_dir / "gunicorn.conf.py", run_dir / "stuck.log"
    config.write_text("control_socket_disable = True\n")
    app_log.touch()
    port = free_port()
    command = gunicorn_command(VARIANTS[variant], workers, port, "stuck_app:app",
                               "-e", f"STUCK_LOG={app_log}", *args, config=config)
    tallies = [Tally() for _ in range(clients)]
    spins: list[str] = []
    with Server(command, run_dir / "gunicorn.log") as server:
        server.wait_serving(port, workers, deadline_s=20)
        start = time.monotonic()
        threads = [threading.Thread(target=client, daemon=True,
                                    args=(port, mode == "keepalive", start + seconds, i, t))
                   for i, t in enumerate(tallies)]
        for thread in threads:
            thread.start()
        side: list[threading.Thread] = []
        for at in spin_at:
            time.sleep(max(0.0, start + at - time.monotonic()))
            side.append(threading.Thread(target=spinner, args=(port, spin_path, spin, spins),
                                         daemon=True))
            side[-1].start()
        for thread in [*threads, *side]:
            thread.join(max(1.0, start + seconds + spin + 2 * CLIENT_TIMEOUT - time.monotonic()))
    runs = Counter(line.split()[0] for line in app_log.read_text().splitlines() if line)
    sent = {rid for t in tallies for rid in t.sent}
    answered = {rid for t in tallies for rid in t.answered}
    failed = {rid for t in tallies for rid in t.failed}
    latencies = sorted(x for t in tallies for x in t.latencies)
    run.sent, run.answered = len(sent), len(answered)
    run.errors = dict(sum((t.errors for t in tallies), Counter()))
    run.workers = dict(sum((t.workers for t in tallies), Counter()))
    run.over_1s = sum(1 for x in latencies if x > SLOW)
    run.p50_ms, run.p99_ms = percentile(latencies, 0.5), percentile(latencies, 0.99)
    run.max_ms = percentile(latencies, 1.0)
    run.run_twice = sum(1 for count in runs.values() if count > 1)
    run.lost = (sum(1 for rid in answered if rid not in runs)
                + len(sent - answered - failed))
    run.run_unanswered = sum(1 for rid in failed if rid in runs)
    bad = Counter(s for s in spins if s != "ok")
    run.spins = f"{spins.count('ok')}/{len(spin_at)}" + "".join(
        f", {kind} {n}" for kind, n in sorted(bad.items()))
    return run


def errors_cell(runs: Sequence[Run]) -> str:
    """The median of the errors, then the median of each kind."""
    kinds = sorted({kind for r in runs for kind in r.errors})
    total = statistics.median(sum(r.errors.values()) for r in runs)
    parts = [f"{kind} {statistics.median(r.errors.get(kind, 0) for r in runs):g}"
             for kind in kinds]
    return f"{total:g}" + (f" ({', '.join(parts)})" if parts else "")


def table(runs: Sequence[Run]) -> str:
    lines = [md_header(["mode", "variant", "sent", "answered", "errors", "> 1 s", "p50", "p99",
                        "max", "run twice", "lost", "run, unanswered", "spins ok"])]
    for mode, name in dict.fromkeys((r.mode, r.variant) for r in runs):
        mine = [r for r in runs if (r.mode, r.variant) == (mode, name)]

        def med(attr: str, rows: list[Run] = mine) -> str:
            return f"{statistics.median(getattr(r, attr) for r in rows):g}"

        def ms(attr: str, rows: list[Run] = mine) -> str:
            values = [v for r in rows if (v := getattr(r, attr)) is not None]
            return fmt_ms(statistics.median(values)) if values else "n/a"

        lines.append(md_row([mode, name, med("sent"), med("answered"), errors_cell(mine),
                             med("over_1s"), ms("p50_ms"), ms("p99_ms"), ms("max_ms"),
                             med("run_twice"), med("lost"), med("run_unanswered"),
                             " / ".join(r.spins for r in mine)]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--variants", default="prefork,gevent")
    parser.add_argument("--modes", default=None,
                        help="comma-separated subset of: keepalive, close (default both; "
                             "keepalive with --timeout-scenario)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="load duration (default 9; 8 with --timeout-scenario)")
    parser.add_argument("--spin", type=float, default=None,
                        help="CPU seconds of each /spin (default 1.5; 10 with "
                             "--timeout-scenario)")
    parser.add_argument("--stuck-in", choices=("python", "c"), default="python",
                        help="spin in Python bytecode (/spin: signal handlers still run) "
                             "or in one C call (/cspin: they do not)")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between spins")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--gunicorn-args", default="",
                        help="extra Gunicorn arguments, one shell-quoted string")
    parser.add_argument("--timeout-scenario", action="store_true",
                        help="--timeout 3, keep-alive, one /spin?10 at 1 s, 8 s of load")
    args = parser.parse_args(argv)
    scenario = args.timeout_scenario
    names = subset(parser, args.variants, tuple(VARIANTS), "--variants", as_given=True)
    modes = subset(parser, args.modes or ("keepalive" if scenario else ",".join(MODES)),
                   MODES, "--modes", as_given=True)
    seconds = args.seconds if args.seconds is not None else (8.0 if scenario else 9.0)
    spin = args.spin if args.spin is not None else (10.0 if scenario else 1.5)
    spin_at = [FIRST_SPIN] if scenario else [
        FIRST_SPIN + k * args.every for k in range(int((seconds - FIRST_SPIN) / args.every) + 1)
        if FIRST_SPIN + k * args.every < seconds]
    spin_path = "/cspin" if args.stuck_in == "c" else "/spin"
    extra = (["--timeout", "3"] if scenario else []) + shlex.split(args.gunicorn_args)
    print(f"gunicorn {gunicorn_version()}, Python {sys.version.split()[0]}, "
          f"{args.workers} workers, {args.clients} clients for {seconds:g}s, {spin_path}?{spin:g} "
          f"at {', '.join(f'{t:g}' for t in spin_at)} s, gunicorn args {extra or 'none'}, "
          f"{args.repeats} repeat(s)", flush=True)
    runs: list[Run] = []
    for mode in modes:
        for repeat, order in interleaved(names, args.repeats):
            for name in order:
                run = run_once(name, mode, repeat, extra, seconds=seconds, spin=spin,
                               spin_at=spin_at, clients=args.clients, workers=args.workers,
                               spin_path=spin_path)
                runs.append(run)
                print(f"[{mode} r{repeat} {name}] answered {run.answered}/{run.sent} "
                      f"errors {run.errors} > 1 s {run.over_1s} twice {run.run_twice} "
                      f"lost {run.lost} spins {run.spins} by worker {run.workers} "
                      f"log {run.log_dir}", file=sys.stderr, flush=True)
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
