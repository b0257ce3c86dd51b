"""How evenly connections spread over workers: gunicorn-prefork vs stock gevent.

    python benchmarks/spread.py [--requests 10000] [--workers 3]

Starts each server on 127.0.0.1 in turn, sends ``--requests`` short requests (one
connection each, 32 at a time), and prints the per-worker counts and the
busiest/quietest ratio. Load goes to 127.0.0.1 only and stops by itself.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import free_port, worker_of

APP = '''
import os
def app(environ, start_response):
    body = b"ok"
    start_response("200 OK", [("Content-Length", "2"), ("X-Worker-Pid", str(os.getpid()))])
    return [body]
'''


def measure(worker_class: str, workers: int, requests: int) -> Counter[str]:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "spread_app.py").write_text(APP)
        port = free_port()
        script = Path(sys.executable).parent / "gunicorn"
        proc = subprocess.Popen(
            [str(script), "-k", worker_class, "-w", str(workers), "-b", f"127.0.0.1:{port}",
             "--log-level", "warning", "spread_app:app"],
            cwd=tmp, env=dict(os.environ, PYTHONPATH=tmp), start_new_session=True)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if len({worker_of(port) for _ in range(20 * workers)}) == workers:
                        break
                except OSError:
                    time.sleep(0.1)
            with concurrent.futures.ThreadPoolExecutor(32) as pool:
                return Counter(pool.map(lambda _: worker_of(port), range(requests)))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    print("| worker class | per-worker requests | busiest/quietest |\n|---|---|---|")
    for worker_class in ("gunicorn_prefork.Worker", "gevent"):
        counts = measure(worker_class, args.workers, args.requests)
        values = sorted(counts.values(), reverse=True)
        ratio = values[0] / values[-1] if len(values) == args.workers else float("inf")
        print(f"| {worker_class} | {', '.join(map(str, values))} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
