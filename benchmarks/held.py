"""How evenly held keep-alive connections spread over workers: ours vs stock gevent.

    python -m benchmarks.held [--workers 4] [--sequential 16] [--burst 32] [--repeats 3]

(from the repository root). For each server in turn (the app is
``benchmarks/apps/spread_app.py``, which names its worker): opens ``--sequential``
keep-alive connections one after another (each gets one answer, then is held), then
``--burst`` more at once, and prints the connections each worker holds after each
step, per repeat. Load goes to 127.0.0.1 only and stops by itself.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import tempfile
import time
from collections import Counter
from pathlib import Path

from .results import argument_parser, md_header, md_row
from .servers import APPS_DIR, Server, free_port, gunicorn_command

#: (label, worker class, environment): ours (defaults: load-aware) and with the
#: kernel's hash alone (prefork_load_aware off, the default before issue 28), stock
VARIANTS = (("prefork", "gunicorn_prefork.Worker", {}),
            ("prefork hash only", "gunicorn_prefork.Worker",
             {"GUNICORN_PREFORK_LOAD_AWARE": "0"}),
            ("-k gevent", "gevent", {}))
HEADER = "x-worker-pid:"


def open_held(port: int) -> tuple[socket.socket, str]:
    """A keep-alive connection with one request answered, and the worker's pid."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the answer")
        data += chunk
    lines = data.split(b"\r\n\r\n")[0].decode().lower().split("\r\n")
    return conn, next(line[len(HEADER):].strip() for line in lines if line.startswith(HEADER))


def measure(worker_class: str, env: dict[str, str], workers: int, sequential: int,
            burst: int) -> tuple[list[int], list[int]]:
    """Connections held per worker (sorted) after the sequential ones, and after the
    burst on top of them."""
    port = free_port()
    command = gunicorn_command(("-k", worker_class), workers, port, "spread_app:app",
                               "--log-level", "warning")
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # the server inherits it (prefork_* settings)
    try:
        return _measure(command, port, workers, sequential, burst)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _measure(command: list[str], port: int, workers: int, sequential: int,
             burst: int) -> tuple[list[int], list[int]]:
    with tempfile.TemporaryDirectory(prefix="held-") as tmp, \
            Server(command, Path(tmp, "gunicorn.log"), cwd=APPS_DIR,
                   stop_wait_s=30) as server:
        server.wait_serving(port, workers, deadline_s=20)
        time.sleep(0.5)  # let the readiness probes' connections end
        held: list[tuple[socket.socket, str]] = []
        try:
            for _ in range(sequential):
                held.append(open_held(port))
                time.sleep(0.02)
            first = Counter(pid for _, pid in held)
            with concurrent.futures.ThreadPoolExecutor(burst) as pool:
                held += pool.map(lambda _: open_held(port), range(burst))
            second = Counter(pid for _, pid in held)
        finally:
            for conn, _ in held:
                conn.close()

    def spread(counts: Counter[str]) -> list[int]:
        return sorted([*counts.values(), *[0] * (workers - len(counts))])

    return spread(first), spread(second)


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sequential", type=int, default=16)
    parser.add_argument("--burst", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(md_header(("variant", "repeat", f"{args.sequential} one by one",
                     f"then {args.burst} at once", "max-min")))
    for repeat in range(1, args.repeats + 1):
        for label, worker_class, env in VARIANTS:
            first, second = measure(worker_class, env, args.workers, args.sequential,
                                    args.burst)
            print(md_row((label, str(repeat), "/".join(map(str, first)),
                          "/".join(map(str, second)),
                          f"{first[-1] - first[0]}, {second[-1] - second[0]}")))


if __name__ == "__main__":
    main()
