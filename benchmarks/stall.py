"""A stalled worker against the shared socket (issue 10's scenarios), same run.

    python -m benchmarks.stall                       # both scenarios, 3 repeats, ~4 min
    python -m benchmarks.stall --scenarios stopped --repeats 1 --mode close
    python -m benchmarks.stall --thresholds 0.01,0.02,0.05   # compare thresholds

2 workers on 127.0.0.1 (app: ``benchmarks/apps/stall_apps.py``), 64 connections for
``--seconds`` (10), ``Connection: close`` (as behind a default nginx proxy) or
keep-alive (``--mode``), from wrk (``-t 2``) and from ab (``--clients``; ab times each
request from its connect, which wrk's percentiles do not do on fresh connections, see
``benchmarks/ab.py``). Scenarios:

- ``mixed``: requests that wait 2 ms cooperatively, plus a side client asking
  ``/block`` (100 ms of CPU without yielding) on a fresh connection every 0.4 s;
- ``stopped``: one worker SIGSTOPped from 3 s to 6 s of the run;
- ``two-stopped`` (not run by default; issue 16's target): 3 workers, two of them
  SIGSTOPped from 3 s to 7 s.

Variants: ``prefork`` (ours, ``prefork_stall_threshold`` from ``--thresholds``, one
variant per value; ``0`` is the feature off), ``gevent`` (Gunicorn's shared socket),
``reuseport`` (``-k gevent --reuse-port``, Gunicorn >= 24 only). Repeats are
interleaved with the variants' order rotating; the table shows medians (min-max)
of p50/p90/p99/max latency and req/s, socket errors summed, and for ours the stalls
over 1 s the master logged and the queued connections it moved to the other worker
(the rescue; medians).
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .ab import ab_command, run_ab, slow_requests
from .masterlog import stall_summary
from .procfs import children
from .results import argument_parser, fmt_ms, interleaved, md_header, md_row, spread, subset
from .servers import (
    GEVENT,
    PREFORK,
    REUSEPORT,
    Server,
    free_port,
    gunicorn_command,
    gunicorn_version,
    http_get,
    reuseport_skip_reason,
)
from .wrk import WrkResult, run_wrk, wrk_command, wrk_result

CLIENTS = ("wrk", "ab")

SCENARIOS = ("mixed", "stopped", "two-stopped")
DEFAULT_SCENARIOS = ("mixed", "stopped")
WORKERS = 2
SIDE_EVERY = 0.4
STOP_AT, CONT_AT = 3.0, 6.0


@dataclass(frozen=True)
class Stop:
    """Which workers a scenario stops, and for how long."""

    workers: int  # the server's
    stopped: int  # how many of them
    seconds: float


STOPS = {"stopped": Stop(WORKERS, 1, CONT_AT - STOP_AT), "two-stopped": Stop(3, 2, 4.0)}


@dataclass(frozen=True)
class Variant:
    name: str
    options: tuple[str, ...]
    threshold: float | None = None  # ours only


@dataclass
class Run:
    scenario: str
    mode: str
    variant: str
    repeat: int
    client: str = "wrk"
    wrk: WrkResult | None = None
    errors: int = 0
    stalls_logged: int = 0
    moved: int = 0
    #: ab only: requests slower than 1 s
    over_1s: int | None = None
    #: the run's directory (gunicorn.conf.py, gunicorn.log, ab's per-request times)
    log_dir: str = ""
    notes: list[str] = field(default_factory=list)


def variants(thresholds: Sequence[float], names: Sequence[str]) -> list[Variant]:
    found = []
    for name in names:
        if name == "prefork":
            found += [Variant(f"prefork@{t:g}", PREFORK, t) for t in thresholds]
        elif name == "gevent":
            found.append(Variant("gevent", GEVENT))
        elif name == "reuseport" and reuseport_skip_reason() is None:
            found.append(Variant("reuseport", REUSEPORT))
    return found


def _side_client(port: int, stop: threading.Event) -> None:
    while not stop.wait(SIDE_EVERY):
        try:
            http_get(port, "/block", timeout=10)
        except OSError:
            pass


def run_once(variant: Variant, scenario: str, mode: str, seconds: int, repeat: int,
             client: str = "wrk") -> Run:
    run = Run(scenario, mode, variant.name, repeat, client)
    port = free_port()
    run_dir = Path(tempfile.mkdtemp(prefix=f"stall-{variant.name}-"))
    run.log_dir = str(run_dir)
    config = run_dir / "gunicorn.conf.py"
    text = "control_socket_disable = True\n"
    if variant.threshold is not None:
        text += f"prefork_recover_threshold = 0\nprefork_stall_threshold = {variant.threshold}\n"
    config.write_text(text)
    stop_plan = STOPS.get(scenario)
    workers = stop_plan.workers if stop_plan is not None else WORKERS
    command = gunicorn_command(variant.options, workers, port, "stall_apps:app", config=config)
    headers = ["Connection: close"] if mode == "close" else []
    with Server(command, run_dir / "gunicorn.log") as server:
        server.wait_serving(port, workers, deadline_s=20)
        stop = threading.Event()
        stopped: list[int] = []

        def stop_some() -> None:
            assert stop_plan is not None
            time.sleep(STOP_AT)
            for pid in children(server.pid)[:stop_plan.stopped]:
                stopped.append(pid)
                os.kill(pid, signal.SIGSTOP)
            time.sleep(stop_plan.seconds)
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)

        def side() -> None:
            _side_client(port, stop)

        event = threading.Thread(target=stop_some if stop_plan is not None else side,
                                 daemon=True)
        event.start()
        try:
            if client == "ab":
                times = run_dir / "ab-times.tsv"
                run.wrk = run_ab(ab_command(port, duration=seconds, conns=64,
                                            keepalive=mode != "close", timeout=8,
                                            per_request=times),
                                 timeout=seconds + 30, output=run_dir / "ab.txt")
                run.over_1s = slow_requests(times)
            else:
                run.wrk = wrk_result(run_wrk(
                    wrk_command(port, duration=seconds, conns=64, threads=2,
                                headers=headers, timeout=8), timeout=seconds + 30))
        finally:
            stop.set()
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
            event.join(10)
        run.errors = sum(run.wrk.socket_errors.values())
    log = server.log()  # after the stop: the stall watch's summary line is in it
    run.stalls_logged = log.count("takes no connections for")
    if (summary := stall_summary(log)) is not None:
        run.moved = summary[1]
    return run


def table(runs: Sequence[Run]) -> str:
    lines = [md_header(["scenario", "mode", "client", "variant", "req/s", "p50", "p90", "p99",
                        "max", "> 1 s", "socket errors", "stalls > 1 s logged", "moved"])]
    keys = list(dict.fromkeys((r.scenario, r.mode, r.client, r.variant) for r in runs))
    for scenario, mode, client, name in keys:
        mine = [r for r in runs
                if (r.scenario, r.mode, r.client, r.variant) == (scenario, mode, client, name)
                and r.wrk is not None]
        if not mine:
            continue

        def values(attr: str, rows: list[Run] = mine) -> list[float | None]:
            return [getattr(r.wrk, attr) for r in rows]

        lines.append(md_row([
            scenario, mode, client, name,
            spread(values("rps"), lambda v: f"{v:,.0f}"),
            spread(values("p50_ms"), fmt_ms), spread(values("p90_ms"), fmt_ms),
            spread(values("p99_ms"), fmt_ms), spread(values("max_ms"), fmt_ms),
            "-" if any(r.over_1s is None for r in mine)
            else str(int(statistics.median(r.over_1s or 0 for r in mine))),
            str(sum(r.errors for r in mine)),
            str(int(statistics.median(r.stalls_logged for r in mine))),
            str(int(statistics.median(r.moved for r in mine))),
        ]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--scenarios", default=",".join(DEFAULT_SCENARIOS),
                        help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    parser.add_argument("--mode", choices=("close", "keepalive", "both"), default="both")
    parser.add_argument("--variants", default="prefork,gevent,reuseport")
    parser.add_argument("--thresholds", default="0.02,0",
                        help="prefork_stall_threshold values for ours (0 = off)")
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    scenarios = subset(parser, args.scenarios, SCENARIOS, "--scenarios")
    names = subset(parser, args.variants, ("prefork", "gevent", "reuseport"), "--variants")
    modes = ("close", "keepalive") if args.mode == "both" else (args.mode,)
    clients = subset(parser, args.clients, CLIENTS, "--clients")
    chosen = variants([float(t) for t in args.thresholds.split(",")], names)
    print(f"gunicorn {gunicorn_version()}, Python {sys.version.split()[0]}, "
          f"{WORKERS} workers (two-stopped: 3), 64 connections for {args.seconds}s from "
          f"{' and '.join(clients)}, {args.repeats} repeat(s)",
          flush=True)
    runs: list[Run] = []
    for scenario in scenarios:
        for mode in modes:
            for client in clients:
                for repeat, order in interleaved(chosen, args.repeats):
                    for variant in order:
                        run = run_once(variant, scenario, mode, args.seconds, repeat, client)
                        runs.append(run)
                        got = run.wrk
                        print(f"[{scenario} {mode} {client} r{repeat} {variant.name}] "
                              f"p90 {got.p90_ms if got else None} "
                              f"p99 {got.p99_ms if got else None} moved {run.moved} "
                              f"errors {got.socket_errors if got else None} "
                              f"log {run.log_dir}",
                              file=sys.stderr, flush=True)
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
