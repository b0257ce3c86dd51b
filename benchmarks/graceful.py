"""Graceful paths against stock ``-k gevent``, same run (issue 8's tables).

    python -m benchmarks.graceful                       # every scenario, ~3 min
    python -m benchmarks.graceful --scenarios cut_hup,early --variants prefork,gevent

(from the repository root, like every tool in ``benchmarks/``). Each scenario starts a
fresh server per variant on 127.0.0.1 (``prefork``: ours; ``gevent``: ``-k gevent`` on
Gunicorn's shared socket), with the app in ``benchmarks/apps/graceful_apps.py``, and
prints one markdown row per variant:

- ``cut_hup`` / ``cut_term`` / ``cut_ttou``: ``--timeout 4 --graceful-timeout 30``, 2
  workers, 6 (TTOU: 8) concurrent requests of 8 s (cooperative sleep); at 0.5 s HUP to
  the master, TERM to each worker, or TTOU. Served / sent.
- ``early``: seconds until the first response bytes of an SSE stream (``yield b""``,
  then 2 s), a HEAD on a generator of 4 chunks 0.5 s apart, and a raw response written
  on ``environ["gunicorn.socket"]`` (then 2 s); and that socket's class module.
- ``recycle``: wrk ``-c 16 -t 2 -d 8`` with ``Connection: close``, ``--max-requests
  1000 --max-requests-jitter 100``, 2 workers: req/s, p99, recycles.
- ``recycle_one``: 1 worker, ``--max-requests 3``: one request, two of 6 s, then (1.5 s
  after the worker announced its restart) a short one: how long that one took.
- ``quit``: 2 workers; QUIT to one, then 30 short requests from 3 clients: how many
  took over 100 ms, and the slowest.
- ``pool``: ``--worker-connections 100``, 2 workers, 400 concurrent requests of 3 s:
  the slowest.
- ``pool_full`` (issue 16's full pools): ``--worker-connections 10``, 2 workers, 200
  concurrent requests of 1 s: 20 places, so 10 s at best; the slowest and the median.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .procfs import children
from .results import argument_parser, md_header, md_row, subset
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
from .wrk import parse_wrk, run_wrk, socket_errors_text, wrk_command, wrk_time

VARIANTS = {"prefork": PREFORK, "gevent": GEVENT}


@contextlib.contextmanager
def server(variant: str, workers: int, *args: str) -> Iterator[tuple[int, Server]]:
    """A fresh server of ``variant`` in its own directory, once every worker answers."""
    port = free_port()
    run_dir = Path(tempfile.mkdtemp(prefix=f"graceful-{variant}-"))
    config = run_dir / "gunicorn.conf.py"
    config.write_text("control_socket_disable = True\nprefork_recover_threshold = 0\n"
                      if variant == "prefork" else "control_socket_disable = True\n")
    command = gunicorn_command(VARIANTS[variant], workers, port, "graceful_apps:app", *args,
                               config=config)
    with Server(command, run_dir / "gunicorn.log", append=True, stop_wait_s=40) as running:
        running.wait_serving(port, workers, deadline_s=20)
        yield port, running


def http(port: int, path: str = "/", method: str = "GET", timeout: float = 60) -> float:
    """Seconds until a complete response (raises on a cut-off)."""
    start = time.monotonic()
    data = http_get(port, path, method, timeout)
    if not data.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
        raise ConnectionAbortedError(data[:60])
    return time.monotonic() - start


def first_bytes(port: int, path: str, method: str = "GET") -> float:
    start = time.monotonic()
    with socket.create_connection((HOST, port), timeout=10) as conn:
        conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
        conn.recv(1)
    return time.monotonic() - start


def concurrent_requests(port: int, count: int, path: str, event: Callable[[], None],
                        delay: float = 0.5, at_once: bool = False) -> list[float | None]:
    """``count`` requests of ``path`` from as many threads (``at_once``: all connect
    together, a burst), ``event()`` after ``delay``; their times, None if cut off."""
    start = threading.Barrier(count) if at_once else None

    def one(_: int) -> float | None:
        if start is not None:
            start.wait()
        try:
            return http(port, path)
        except OSError:
            return None

    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(one, n) for n in range(count)]
        time.sleep(delay)
        event()
        return [future.result() for future in futures]


def cut(variant: str, event_name: str) -> str:
    count = 8 if event_name == "ttou" else 6
    with server(variant, 2, "--timeout", "4", "--graceful-timeout", "30") as (port, master):
        def event() -> None:
            if event_name == "hup":
                os.kill(master.pid, signal.SIGHUP)
            elif event_name == "ttou":
                os.kill(master.pid, signal.SIGTTOU)
            else:
                for pid in children(master.pid):
                    os.kill(pid, signal.SIGTERM)
        times = concurrent_requests(port, count, "/sleep?8", event)
    served = sum(t is not None for t in times)
    return f"{served}/{count} served"


def early(variant: str) -> str:
    with server(variant, 2) as (port, _):
        sse = first_bytes(port, "/sse")
        head = first_bytes(port, "/chunks", "HEAD")
        hijack = first_bytes(port, "/hijack")
        data = http_get(port, "/socket", timeout=5)
        module = data.rpartition(b"\r\n\r\n")[2].decode()
    return f"SSE {sse:.3f} s, HEAD {head:.3f} s, hijack {hijack:.3f} s, socket from {module}"


def recycle(variant: str) -> str:
    args = ("--max-requests", "1000", "--max-requests-jitter", "100")
    with server(variant, 2, *args) as (port, master):
        done = run_wrk(wrk_command(port, duration=8, conns=16, threads=2,
                                   headers=("Connection: close",)))
        done.check_returncode()
        recycles = master.log().count("Autorestarting worker")
    wrk = parse_wrk(done.stdout)
    p99 = "?" if wrk.p99_ms is None else wrk_time(wrk.p99_ms)
    return (f"{wrk.rps or 0:,.0f} req/s, p99 {p99}, {recycles} recycles"
            + (f", errors: {socket_errors_text(wrk)}" if wrk.socket_errors else ""))


def recycle_one(variant: str) -> str:
    with server(variant, 1, "--max-requests", "3") as (port, master):  # start: 1 request
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            slow = [pool.submit(http, port, "/sleep?6") for _ in range(2)]
            deadline = time.monotonic() + 10
            while "Autorestarting" not in master.log() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.5)
            third = pool.submit(http, port, "/").result()
            for future in slow:
                future.result()
    return f"third client took {third:.2f} s"


def quit_one(variant: str) -> str:
    with server(variant, 2) as (port, master):
        os.kill(children(master.pid)[0], signal.SIGQUIT)
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            times = list(pool.map(lambda _: http(port, "/", timeout=10), range(30)))
    slow = [t for t in times if t > 0.1]
    return f"{len(slow)}/30 over 100 ms, slowest {max(times):.3f} s"


def pool(variant: str) -> str:
    with server(variant, 2, "--worker-connections", "100", "--backlog", "2048") as (port, _):
        times = concurrent_requests(port, 400, "/sleep?3", lambda: None, 0)
    served = [t for t in times if t is not None]
    return f"{len(served)}/400 served, slowest {max(served):.2f} s"


def pool_full(variant: str) -> str:
    with server(variant, 2, "--worker-connections", "10", "--timeout", "60") as (port, _):
        times = concurrent_requests(port, 200, "/sleep?1", lambda: None, 0, at_once=True)
    served = [t for t in times if t is not None]
    return (f"{len(served)}/200 served, slowest {max(served):.2f} s, "
            f"median {statistics.median(served):.2f} s")


SCENARIOS: dict[str, Callable[[str], str]] = {
    "cut_hup": lambda v: cut(v, "hup"),
    "cut_term": lambda v: cut(v, "term"),
    "cut_ttou": lambda v: cut(v, "ttou"),
    "early": early,
    "recycle": recycle,
    "recycle_one": recycle_one,
    "quit": quit_one,
    "pool": pool,
    "pool_full": pool_full,
}


def main() -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    scenarios = subset(parser, args.scenarios, list(SCENARIOS), "--scenarios", as_given=True)
    variants = subset(parser, args.variants, list(VARIANTS), "--variants", as_given=True)
    print(f"gunicorn {gunicorn_version()}, Python {sys.version.split()[0]}\n")
    print(md_header(("scenario", "variant", "result")))
    for name in scenarios:
        for variant in variants:
            print(md_row((name, variant, SCENARIOS[name](variant))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
