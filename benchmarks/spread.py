"""How evenly connections spread over workers: gunicorn-prefork vs stock gevent.

    python -m benchmarks.spread [--requests 10000] [--workers 3]

(from the repository root, like every tool in ``benchmarks/``). Starts each server on
127.0.0.1 in turn (the app is ``benchmarks/apps/spread_app.py``), sends ``--requests``
short requests (one connection each, 32 at a time), and prints the per-worker counts
and the busiest/quietest ratio. Load goes to 127.0.0.1 only and stops by itself.
"""

from __future__ import annotations

import concurrent.futures
import tempfile
from collections import Counter
from pathlib import Path

from .results import argument_parser, fmt_ratio, md_header, md_row
from .servers import APPS_DIR, Server, free_port, gunicorn_command, worker_of

WORKER_CLASSES = ("gunicorn_prefork.Worker", "gevent")


def measure(worker_class: str, workers: int, requests: int) -> Counter[str]:
    """Which worker answered each of ``requests`` requests, counted."""
    port = free_port()
    command = gunicorn_command(("-k", worker_class), workers, port, "spread_app:app",
                               "--log-level", "warning")
    with tempfile.TemporaryDirectory(prefix="spread-") as tmp, \
            Server(command, Path(tmp, "gunicorn.log"), cwd=APPS_DIR,
                   stop_wait_s=30) as server:
        server.wait_serving(port, workers, deadline_s=20)
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            return Counter(pool.map(lambda _: worker_of(port), range(requests)))


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    print(md_header(("worker class", "per-worker requests", "busiest/quietest")))
    for worker_class in WORKER_CLASSES:
        counts = measure(worker_class, args.workers, args.requests)
        values = sorted(counts.values(), reverse=True)
        ratio = values[0] / values[-1] if len(values) == args.workers else float("inf")
        print(md_row((worker_class, ", ".join(map(str, values)), fmt_ratio(ratio, 3))))


if __name__ == "__main__":
    main()
