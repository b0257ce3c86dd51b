"""Full pools: more requests at once than the workers' pools hold (issue 16's target).

    python -m benchmarks.full_pools [--requests 200] [--worker-connections 10] [--repeats 2]

2 workers with ``--worker-connections 10`` on 127.0.0.1 (app:
``benchmarks/apps/stall_apps.py``, ``/sleep1``: 1 s, cooperative); ``--requests``
clients each send one request on a fresh connection, all at once. With 20 places,
200 one-second requests need 10 s at best; the tool prints the slowest, the median
and the failures for ours (defaults) and ``-k gevent``, in the same repeat. With a
shared socket, a worker with a free place takes the next queued connection; with a
socket per worker, a connection waits for its own worker unless the master's stall
watch (a full pool counts as stalled) moves it.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .results import argument_parser, interleaved, md_header, md_row, spread
from .servers import (
    GEVENT,
    PREFORK,
    Server,
    free_port,
    gunicorn_command,
    gunicorn_version,
    http_get,
)

VARIANTS = {"prefork": PREFORK, "gevent": GEVENT}
WORKERS = 2


def run_once(options: Sequence[str], requests: int, connections: int) -> tuple[list[float], int]:
    """Latencies (s) of the answered requests, and how many failed."""
    port = free_port()
    command = gunicorn_command(options, WORKERS, port, "stall_apps:app",
                               "--worker-connections", str(connections), "--timeout", "60")
    times: list[float] = []
    failed = [0]
    lock = threading.Lock()
    start = threading.Barrier(requests)

    def one() -> None:
        start.wait()
        began = time.monotonic()
        try:
            ok = http_get(port, "/sleep1", timeout=60).split(b"\r\n", 1)[0].endswith(b" 200 OK")
        except OSError:
            ok = False
        with lock:
            if ok:
                times.append(time.monotonic() - began)
            else:
                failed[0] += 1

    with tempfile.TemporaryDirectory(prefix="full-pools-") as tmp, \
            Server(command, Path(tmp, "gunicorn.log")) as server:
        server.wait_serving(port, WORKERS, deadline_s=20)
        threads = [threading.Thread(target=one) for _ in range(requests)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    return times, failed[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--worker-connections", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    print(f"gunicorn {gunicorn_version()}, Python {sys.version.split()[0]}, {WORKERS} "
          f"workers x {args.worker_connections} places, {args.requests} requests of 1 s "
          f"at once, {args.repeats} repeat(s)", flush=True)
    results: dict[str, list[tuple[list[float], int]]] = {name: [] for name in VARIANTS}
    for repeat, order in interleaved(list(VARIANTS), args.repeats):
        for name in order:
            times, failed = run_once(VARIANTS[name], args.requests, args.worker_connections)
            results[name].append((times, failed))
            print(f"[r{repeat} {name}] slowest {max(times, default=0):.2f} s, "
                  f"failed {failed}", file=sys.stderr, flush=True)
    lines = [md_header(["variant", "slowest", "median", "failed"])]
    for name, runs in results.items():
        lines.append(md_row([
            name,
            spread([max(t, default=None) for t, _ in runs], lambda v: f"{v:.2f} s"),
            spread([statistics.median(t) if t else None for t, _ in runs],
                   lambda v: f"{v:.2f} s"),
            str(sum(f for _, f in runs))]))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
