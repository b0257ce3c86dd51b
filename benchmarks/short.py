"""Plain short connections, one request each, no stall: ours against stock, same run.

    python -m benchmarks.short                              # 3 repeats, ~2 min
    python -m benchmarks.short --workers 4 --repeats 5
    python -m benchmarks.short --accept-batches 1,4,16,100  # the worker's accept batch

Issue 16's target "plain short connections (``ab -c 64``, one request each), 2
workers". For each variant in turn (the order rotates each repeat), a fresh server on
127.0.0.1 runs the seed tool's hello-world app (``benchmarks/apps/seed_apps.py``);
``ab -c CONNS -t SECONDS`` (``Connection: close``, per-request times) loads it. On a
2-core machine the client shares the cores with the server: the saturated case.

Variants:

- ``prefork``: ours, defaults (load-aware since issue 28);
- ``prefork hash only``: ours with ``prefork_load_aware`` off (``GUNICORN_PREFORK_LOAD_AWARE=0``,
  the default before issue 28);
- ``prefork batch=N``: ours, the worker accepting at most N connections per wake-up
  (``--accept-batches``; set by a ``post_worker_init`` hook in the run's config, no
  setting of the package);
- ``gevent``: ``-k gevent`` on Gunicorn's shared socket.

The table has medians (min-max) over the repeats: req/s and its ratio to the shared
socket's in the same repeat, ab's p50/p90/p99/max, requests over 1 s, socket errors,
and the master's CPU seconds and context switches per second during the load (what the
stall watch's thread costs; the shared socket's master does nothing).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .ab import ab_command, run_ab, slow_requests
from .procfs import cpu_seconds
from .results import argument_parser, fmt_ms, interleaved, md_header, md_row, spread
from .seed import ask_count
from .servers import (
    APPS_DIR,
    GEVENT,
    PREFORK,
    Server,
    batch_config,
    free_port,
    gunicorn_command,
    gunicorn_version,
)


@dataclass(frozen=True)
class Variant:
    name: str
    options: tuple[str, ...]
    config: str = ""
    env: tuple[tuple[str, str], ...] = ()


@dataclass
class Run:
    variant: str
    repeat: int
    rps: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None
    max_ms: float | None = None
    over_1s: int = 0
    errors: int = 0
    master_cpu: float = 0.0
    master_switches: float = 0.0
    ratio: float | None = None


def variants(batches: Sequence[int]) -> list[Variant]:
    found = [Variant("prefork", PREFORK),
             Variant("prefork hash only", PREFORK,
                     env=(("GUNICORN_PREFORK_LOAD_AWARE", "0"),))]
    found += [Variant(f"prefork batch={batch}", PREFORK, batch_config(batch))
              for batch in batches]
    return [*found, Variant("gevent", GEVENT)]


def context_switches(pid: int) -> int:
    """Voluntary and involuntary context switches of every thread of ``pid``."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as status:
                for line in status:
                    if line.startswith(("voluntary_ctxt_switches",
                                        "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


def run_once(variant: Variant, repeat: int, workers: int, conns: int, seconds: int) -> Run:
    run = Run(variant.name, repeat)
    port = free_port()
    run_dir = Path(tempfile.mkdtemp(prefix="short-"))
    config = run_dir / "gunicorn.conf.py"
    config.write_text("control_socket_disable = True\n" + variant.config)
    command = gunicorn_command(variant.options, workers, port, "seed_apps:hello_app",
                               config=config)
    saved = {name: os.environ.get(name) for name, _ in variant.env}
    os.environ.update(dict(variant.env))  # the server inherits it
    try:
        with Server(command, run_dir / "gunicorn.log", cwd=APPS_DIR) as server:
            server.wait_serving(port, workers, ask=lambda p: ask_count(p, timeout=1.0)[0],
                                deadline_s=20)
            cpu0, switches0 = cpu_seconds(server.pid), context_switches(server.pid)
            times = run_dir / "ab-times.tsv"
            result = run_ab(ab_command(port, duration=seconds, conns=conns,
                                       per_request=times),
                            timeout=seconds + 30, output=run_dir / "ab.txt")
            run.master_cpu = cpu_seconds(server.pid) - cpu0
            run.master_switches = (context_switches(server.pid) - switches0) / seconds
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    run.rps, run.p50, run.p90 = result.rps, result.p50_ms, result.p90_ms
    run.p99, run.max_ms = result.p99_ms, result.max_ms
    run.over_1s = slow_requests(times)
    run.errors = sum(result.socket_errors.values())
    return run


def table(runs: Sequence[Run]) -> str:
    lines = [md_header(["variant", "req/s", "x shared", "p50", "p90", "p99", "max", "> 1 s",
                        "socket errors", "master CPU s", "master switches/s"])]
    for name in dict.fromkeys(r.variant for r in runs):
        mine = [r for r in runs if r.variant == name]

        def values(attr: str, rows: list[Run] = mine) -> list[float | None]:
            return [getattr(r, attr) for r in rows]

        lines.append(md_row([
            name, spread(values("rps"), lambda v: f"{v:,.0f}"),
            spread(values("ratio"), lambda v: f"{v:.2f}"),
            spread(values("p50"), fmt_ms), spread(values("p90"), fmt_ms),
            spread(values("p99"), fmt_ms), spread(values("max_ms"), fmt_ms),
            str(int(statistics.median(r.over_1s for r in mine))),
            str(sum(r.errors for r in mine)),
            spread(values("master_cpu"), lambda v: f"{v:.2f}"),
            spread(values("master_switches"), lambda v: f"{v:.0f}"),
        ]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--conns", type=int, default=64, help="ab -c (64)")
    parser.add_argument("--seconds", type=int, default=8, help="ab -t (8)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--accept-batches", default="",
                        help="comma-separated accept batches to try (ours: 100)")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.accept_batches.split(",") if b.strip()]
    if any(batch < 1 for batch in batches):
        parser.error(f"--accept-batches: each batch must be at least 1, not {batches}")
    chosen = variants(batches)
    print(f"gunicorn {gunicorn_version()}, Python {sys.version.split()[0]}, "
          f"{args.workers} workers, ab -c {args.conns} for {args.seconds}s "
          f"(Connection: close), {args.repeats} repeat(s)", flush=True)
    runs: list[Run] = []
    for repeat, order in interleaved(chosen, args.repeats):
        done = [run_once(variant, repeat, args.workers, args.conns, args.seconds)
                for variant in order]
        shared = next((r.rps for r in done if r.variant == "gevent"), None)
        for run in done:
            if shared and run.rps is not None:
                run.ratio = run.rps / shared
            print(f"[r{repeat} {run.variant}] {run.rps} req/s p90 {run.p90} "
                  f"p99 {run.p99} master {run.master_cpu:.2f}s "
                  f"{run.master_switches:.0f}/s", file=sys.stderr, flush=True)
        runs += done
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
