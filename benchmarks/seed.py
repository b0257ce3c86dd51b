"""fasthttp's prefork benchmark, redone for Gunicorn: our worker against the alternatives.

    python -m benchmarks.seed                               # full run: ~6-8 min on 2 cores
    python -m benchmarks.seed --duration 3 --repeats 1      # smoke test, ~1 min
    python -m benchmarks.seed --workload hello --variants prefork,gevent

(from the repository root, like every tool in ``benchmarks/``). With Gunicorn's C
parser on both Gunicorn variants: ``pip install gunicorn_h1c``, then
``--http-parser fast`` (Gunicorn 25+ use it by themselves under ``auto`` once it is
installed; ``fast`` makes a missing install an error instead of the Python parser).

Variants (each with ``--workers`` workers, 2 by default, on 127.0.0.1 only):

- ``prefork``: ``gunicorn -k gunicorn_prefork.Worker`` (one SO_REUSEPORT socket per worker);
- ``gevent``: ``gunicorn -k gevent`` on Gunicorn's shared socket;
- ``reuseport``: ``gunicorn -k gevent --reuse-port``, only with Gunicorn >= 24, where each
  worker binds its own socket after the fork;
- ``granian``: ``granian --interface wsgi``, only if granian is installed (this script
  installs nothing; ``pip install granian`` to include it).

Workloads (apps in ``benchmarks/apps/seed_apps.py``):

- ``sleep``: the seed's handler, ``time.sleep(0.1)`` (patched by gevent), 512 connections;
  the ceiling is connections / 0.1 s = 5,120 req/s;
- ``hello``: ``Hello, World!``, 64 connections; compared with ``gevent`` in the same repeat;
- ``json``: a JSON API's handler (parses the query string, answers about 2 KB of JSON),
  ``GET /items?page=3``, 64 connections; compared with ``gevent`` like ``hello``.

Load comes from wrk with the seed's command line::

    wrk -H 'Host: localhost' -H 'Accept: text/plain,...;q=0.7' -H 'Connection: keep-alive' \\
        --latency -d <duration> -c <conns> --timeout 8 -t <threads> http://127.0.0.1:PORT/

Each repeat runs every workload, and within it every variant, in turn; the order of the
variants rotates from one repeat to the next, so slow phases of a noisy machine spread over
all of them. Each run starts the server with the console script next to ``sys.executable``
on a fresh port, waits until every worker answers, runs wrk, then measures and stops the
server (TERM to the master, a bounded wait, then SIGKILL to its process group).
"Waits until every worker answers" means: every worker has answered ``/__count`` on a fresh
connection, then ``--settle`` seconds (2 by default) pass, so that keep-alive connections
are not opened while the server is still booting: wrk keeps its connections for the
whole run, so where they land at the start decides the spread.

Measured per run:

- from wrk: req/s, latency p50/p90/p99 and max (wrk leaves timed-out requests out of its
  latencies), socket errors (connect + read + write + timeout), "Non-2xx or 3xx" responses;
- per-worker requests: each app keeps an in-memory count; after wrk the runner asks
  ``/__count`` over fresh connections until every worker has answered, and reports the
  busiest/quietest ratio;
- worker RSS: VmRSS of the master's children, read right after wrk (median over workers);
- CPU: the workers' CPU time per request (from /proc/<pid>/stat) and "other load", the share
  of all cores busy with anything else than the server, wrk and interrupts during the run
  (from /proc/stat): other processes on a shared machine show up there.

Printed: a markdown table, per workload and variant, of the median and min-max over the
repeats. Written: every run's raw numbers as JSON (``--json``, by default
``benchmarks/results/seed-<timestamp>.json``) and the servers' logs (level info) in a
directory next to it, ``<json name>-logs/``.

Caveat: wrk counts a timeout only when a late response arrives, so connections that never
get an answer appear nowhere in its output; compare wrk's request total with the workers'
counts (JSON) and look for a worker with 0 requests (max/min ``inf``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .masterlog import cpu_waits, stall_summary
from .procfs import children, cpu_seconds, loadavg, rss_mib, system_cpu
from .results import (
    RESULTS_DIR,
    argument_parser,
    fmt_int,
    fmt_ms,
    fmt_pct,
    fmt_ratio,
    interleaved,
    md_header,
    md_row,
    source_state,
    spread,
    subset,
    write_json,
)
from .servers import (
    APPS_DIR,
    GEVENT,
    HOST,
    PREFORK,
    REUSEPORT,
    Server,
    batch_config,
    free_port,
    gunicorn_command,
    gunicorn_version,
    http_get,
    reuseport_skip_reason,
)
from .wrk import WrkResult, run_wrk, wrk_command, wrk_result

SLEEP_SECONDS = 0.1
COUNT_PATH = "/__count"
WRK_HEADERS = (
    "Host: localhost",
    "Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,"
    "application/xml;q=0.8,*/*;q=0.7",
    "Connection: keep-alive",
)


@dataclass(frozen=True)
class Workload:
    name: str
    app: str
    conns: int
    #: what wrk requests
    path: str = "/"


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    command: Callable[[argparse.Namespace, Workload, int], list[str]]


@dataclass
class Run:
    repeat: int
    workload: str
    variant: str
    command: list[str]
    wrk_command: list[str]
    port: int
    started: str
    wrk: WrkResult | None = None
    error: str | None = None
    per_worker: dict[str, int] = field(default_factory=dict)
    per_worker_ratio: float | None = None
    worker_rss_mib: dict[str, float] = field(default_factory=dict)
    median_rss_mib: float | None = None
    worker_cpu_s: float | None = None
    cpu_us_per_req: float | None = None
    other_load_pct: float | None = None
    cpu_accounting: dict[str, float] = field(default_factory=dict)
    worker_pids_before: list[int] = field(default_factory=list)
    worker_pids_after: list[int] = field(default_factory=list)
    loadavg_before: str = ""
    ratio: float | None = None
    #: ours: stalls the master's stall watch saw, connections it moved (None: no line)
    stalls: int | None = None
    moved: int | None = None
    #: ours: waits past the threshold that were a worker waiting for a CPU
    cpu_waits: int = 0


# --- servers ------------------------------------------------------------------------------


def _gunicorn(options: Sequence[str]) -> Callable[[argparse.Namespace, Workload, int],
                                                  list[str]]:
    def command(args: argparse.Namespace, workload: Workload, port: int) -> list[str]:
        parser = ("--http-parser", args.http_parser) if args.http_parser else ()
        return gunicorn_command(options, args.workers, port, f"seed_apps:{workload.app}",
                                "--log-level", "info", "--graceful-timeout", "5", *parser)
    return command


def _granian_exe() -> list[str] | None:
    script = Path(sys.executable).parent / "granian"
    if script.exists():
        return [str(script)]
    if importlib.util.find_spec("granian") is not None:
        return [sys.executable, "-m", "granian"]
    found = shutil.which("granian")
    return [found] if found else None


def _granian(args: argparse.Namespace, workload: Workload, port: int) -> list[str]:
    exe = _granian_exe()
    assert exe is not None
    command = [*exe, "--interface", "wsgi", "--host", HOST, "--port", str(port),
               "--workers", str(args.workers)]
    if args.granian_blocking_threads:
        command += ["--blocking-threads", str(args.granian_blocking_threads)]
    return [*command, f"seed_apps:{workload.app}"]


#: the json workload's request
JSON_PATH = "/items?page=3"

def _config_variant(name: str, label: str, config_text: str) -> Variant:
    """Ours with ``config_text`` as its config file (settings, hooks)."""
    def command(args: argparse.Namespace, workload: Workload, port: int) -> list[str]:
        config = RESULTS_DIR / f"{name}.conf.py"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(config_text)
        parser = ("--http-parser", args.http_parser) if args.http_parser else ()
        return gunicorn_command(PREFORK, args.workers, port, f"seed_apps:{workload.app}",
                                "--log-level", "info", "--graceful-timeout", "5", *parser,
                                config=config)
    return Variant(name, label, command)


def _batch_variant(batch: int) -> Variant:
    """Ours with the worker's accept batch set to ``batch`` (a ``post_worker_init``
    hook in a config file; see ``benchmarks.short``)."""
    return _config_variant(f"prefork-b{batch}", f"gunicorn_prefork.Worker batch={batch}",
                           batch_config(batch))


VARIANTS = (
    Variant("prefork", "gunicorn_prefork.Worker", _gunicorn(PREFORK)),
    # the kernel's hash alone: the default before issue 28
    _config_variant("prefork-hash", "gunicorn_prefork.Worker prefork_load_aware=False",
                    "prefork_load_aware = False\n"),
    Variant("gevent", "-k gevent (shared socket)", _gunicorn(GEVENT)),
    Variant("reuseport", "-k gevent --reuse-port", _gunicorn(REUSEPORT)),
    Variant("granian", "granian --interface wsgi", _granian),
)


def skipped_variants() -> dict[str, str]:
    """Variants this machine cannot run, with the reason."""
    skipped = {}
    if reason := reuseport_skip_reason():
        skipped["reuseport"] = reason
    if _granian_exe() is None:
        skipped["granian"] = "granian is not installed (pip install granian to include it)"
    return skipped


def ask_count(port: int, timeout: float = 2.0) -> tuple[str, int]:
    """``GET /__count`` on a fresh connection: (pid, requests served) of whoever answers."""
    data = http_get(port, COUNT_PATH, timeout=timeout)
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.") or b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
        raise RuntimeError(f"unexpected answer to {COUNT_PATH}: {data[:200]!r}")
    pid, count = body.split()
    return pid.decode(), int(count)


def collect_counts(port: int, workers: int, deadline_s: float) -> dict[str, int]:
    """Ask ``/__count`` over fresh connections until ``workers`` pids have answered."""
    counts: dict[str, int] = {}
    deadline = time.monotonic() + deadline_s
    while len(counts) < workers and time.monotonic() < deadline:
        try:
            pid, count = ask_count(port)
        except (OSError, RuntimeError, ValueError):
            time.sleep(0.05)
            continue
        counts[pid] = count
    return counts


# --- one run ------------------------------------------------------------------------------


def run_once(args: argparse.Namespace, variant: Variant, workload: Workload, repeat: int,
             logs: Path) -> Run:
    port = free_port()
    command = variant.command(args, workload, port)
    wrk = wrk_command(port, duration=args.duration, conns=workload.conns,
                      threads=args.threads, headers=WRK_HEADERS, timeout=8, wrk=args.wrk,
                      path=workload.path)
    run = Run(repeat=repeat, workload=workload.name, variant=variant.name, command=command,
              wrk_command=wrk, port=port, started=dt.datetime.now().isoformat(timespec="seconds"),
              loadavg_before=loadavg(5))
    log_path = logs / f"{workload.name}-{variant.name}-{repeat}.log"
    try:
        with Server(command, log_path, cwd=APPS_DIR) as server:
            server.wait_serving(port, args.workers,
                                ask=lambda port: ask_count(port, timeout=1.0)[0])
            time.sleep(args.settle)
            workers = children(server.pid)
            cpu_before = {pid: cpu_seconds(pid) for pid in workers}
            master_before = cpu_seconds(server.pid)
            sys_before = system_cpu()
            wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = run_wrk(wrk, timeout=args.duration + 60)
            wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            sys_after = system_cpu()
            # Right after the run, before anything else touches the workers.
            workers_after = children(server.pid)
            run.worker_pids_before, run.worker_pids_after = workers, workers_after
            run.worker_rss_mib = {str(pid): rss for pid in workers_after
                                  if (rss := rss_mib(pid)) is not None}
            worker_cpu = sum(cpu_seconds(pid) - cpu_before.get(pid, 0.0)
                             for pid in workers_after)
            master_cpu = cpu_seconds(server.pid) - master_before
            wrk_cpu = ((wrk_after.ru_utime + wrk_after.ru_stime)
                       - (wrk_before.ru_utime + wrk_before.ru_stime))
            run.wrk = wrk_result(done)
            counts = collect_counts(port, args.workers, deadline_s=15.0)
            run.per_worker = counts
            if len(counts) >= args.workers:
                low, high = min(counts.values()), max(counts.values())
                run.per_worker_ratio = high / low if low else math.inf
            # Keep only the processes that served (granian may have other children).
            served = [rss for pid, rss in run.worker_rss_mib.items() if pid in counts]
            rss_values = served or list(run.worker_rss_mib.values())
            run.median_rss_mib = statistics.median(rss_values) if rss_values else None
            run.worker_cpu_s = worker_cpu
            if run.wrk.requests:
                run.cpu_us_per_req = worker_cpu / run.wrk.requests * 1e6
            all_s = sys_after[0] - sys_before[0]
            other = ((sys_after[1] - sys_before[1]) - (sys_after[2] - sys_before[2])
                     - worker_cpu - master_cpu - wrk_cpu)
            run.cpu_accounting = {
                "all_cores_s": all_s, "busy_s": sys_after[1] - sys_before[1],
                "irq_softirq_s": sys_after[2] - sys_before[2], "workers_s": worker_cpu,
                "master_s": master_cpu, "wrk_s": wrk_cpu}
            if all_s > 0:
                run.other_load_pct = max(0.0, other) / all_s * 100
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        run.error = str(exc)
    if log_path.exists():
        text = log_path.read_text(errors="replace")
        if variant.name == "prefork":
            run.stalls, run.moved = stall_summary(text) or (0, 0)
            run.cpu_waits = cpu_waits(text)
    return run


# --- summary ------------------------------------------------------------------------------


def add_ratios(runs: list[Run], workloads: dict[str, Workload]) -> None:
    """sleep: req/s over the ceiling; hello: over ``gevent`` in the same repeat."""
    gevent_rps = {(r.repeat, r.workload): r.wrk.rps for r in runs
                  if r.variant == "gevent" and r.wrk is not None}
    for r in runs:
        if r.wrk is None or r.wrk.rps is None:
            continue
        if r.workload == "sleep":
            r.ratio = r.wrk.rps / (workloads["sleep"].conns / SLEEP_SECONDS)
        elif base := gevent_rps.get((r.repeat, r.workload)):
            r.ratio = r.wrk.rps / base


COLUMNS = ("workload", "variant", "ok runs", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
           "sock err", "non-2xx/3xx", "worker max/min", "ratio", "RSS MiB", "CPU µs/req",
           "other load")


def table(runs: list[Run], variants: Sequence[Variant], workloads: Sequence[Workload]) -> str:
    lines = [md_header(COLUMNS)]
    for workload in workloads:
        ratio_to = (f"of {workload.conns / SLEEP_SECONDS:,.0f}" if workload.name == "sleep"
                    else "vs gevent")
        for variant in variants:
            mine = [r for r in runs if r.workload == workload.name and r.variant == variant.name]
            ok = [r for r in mine if r.wrk is not None]
            if not mine:
                continue
            w = [r.wrk for r in ok if r.wrk is not None]
            lines.append(md_row([
                f"{workload.name} c{workload.conns}", variant.label, f"{len(ok)}/{len(mine)}",
                spread([x.rps for x in w], fmt_int),
                spread([x.p50_ms for x in w], fmt_ms),
                spread([x.p90_ms for x in w], fmt_ms),
                spread([x.p99_ms for x in w], fmt_ms),
                spread([x.max_ms for x in w], fmt_ms),
                spread([float(sum(x.socket_errors.values())) for x in w], fmt_int),
                spread([float(x.non_2xx_3xx) for x in w], fmt_int),
                spread([r.per_worker_ratio for r in ok], fmt_ratio),
                spread([r.ratio for r in ok], fmt_ratio) + (f" {ratio_to}" if ok else ""),
                spread([r.median_rss_mib for r in ok], lambda v: f"{v:.1f}"),
                spread([r.cpu_us_per_req for r in ok], fmt_int),
                spread([r.other_load_pct for r in ok], fmt_pct),
            ]))
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--workload", choices=("sleep", "hello", "json", "all"),
                        default="all")
    parser.add_argument("--variants", default="all",
                        help="comma-separated subset of: "
                             + ", ".join(v.name for v in VARIANTS) + " (default all)")
    parser.add_argument("--duration", type=int, default=15, help="wrk seconds per run")
    parser.add_argument("--threads", type=int, default=4, help="wrk threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sleep-conns", type=int, default=512)
    parser.add_argument("--hello-conns", type=int, default=64)
    parser.add_argument("--http-parser", choices=("auto", "fast", "python"), default=None,
                        help="Gunicorn 25+'s http_parser for every Gunicorn variant: fast = "
                             "its C parser (pip install gunicorn_h1c; Gunicorn refuses to "
                             "start without it), python = never; default: Gunicorn's own "
                             "(auto: the C parser when installed)")
    parser.add_argument("--accept-batches", default="",
                        help="comma-separated accept batches of ours to add as variants "
                             "prefork-bN (ours accepts up to 100 per wake-up)")
    parser.add_argument("--granian-blocking-threads", type=int, default=0,
                        help="passed as granian --blocking-threads when > 0")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds between every worker answering and the wrk run "
                             "(default 2)")
    parser.add_argument("--wrk", default="wrk", help="wrk executable")
    parser.add_argument("--json", type=Path, default=None,
                        help="raw results (default benchmarks/results/seed-<timestamp>.json)")
    args = parser.parse_args(argv)
    args.variant_list = subset(parser, args.variants, [v.name for v in VARIANTS], "--variants")
    args.batches = [int(b) for b in args.accept_batches.split(",") if b.strip()]
    if any(batch < 1 for batch in args.batches):
        parser.error(f"--accept-batches: each batch must be at least 1, not {args.batches}")
    if min(args.duration, args.threads, args.repeats, args.workers) < 1:
        parser.error("--duration, --threads, --repeats and --workers must be >= 1")
    if shutil.which(args.wrk) is None:
        parser.error(f"wrk not found ({args.wrk!r}); install it, e.g. apt-get install wrk")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path: Path = args.json or RESULTS_DIR / f"seed-{stamp}.json"

    all_workloads = {"sleep": Workload("sleep", "sleep_app", args.sleep_conns),
                     "hello": Workload("hello", "hello_app", args.hello_conns),
                     "json": Workload("json", "json_app", args.hello_conns, JSON_PATH)}
    workloads = (list(all_workloads.values()) if args.workload == "all"
                 else [all_workloads[args.workload]])
    wanted = args.variant_list
    skipped = {k: v for k, v in skipped_variants().items() if k in wanted}
    variants = [v for v in VARIANTS if v.name in wanted and v.name not in skipped]
    variants += [_batch_variant(batch) for batch in args.batches]
    if any(w.name != "sleep" for w in workloads) and "gevent" not in wanted:
        print("note: the ratio is to gevent, which is not selected", file=sys.stderr)

    total = args.repeats * len(workloads) * len(variants)
    print(f"{total} runs of {args.duration}s ({args.workers} workers, wrk -t{args.threads}); "
          f"skipped: {skipped or 'none'}", file=sys.stderr)
    logs = json_path.with_name(json_path.stem + "-logs")
    logs.mkdir(parents=True, exist_ok=True)
    runs: list[Run] = []
    done = 0
    for repeat, order in interleaved(variants, args.repeats):
        for workload in workloads:
            for variant in order:
                done += 1
                run = run_once(args, variant, workload, repeat, logs)
                runs.append(run)
                if run.wrk is not None:
                    summary = (f"{run.wrk.rps:,.0f} req/s, p99 "
                               f"{(run.wrk.p99_ms or 0):.1f} ms, "
                               f"workers {sorted(run.per_worker.values())}, "
                               f"other load {fmt_pct(run.other_load_pct or 0)}")
                    if run.worker_pids_before != run.worker_pids_after:
                        summary += (f"; WORKERS CHANGED {run.worker_pids_before} -> "
                                    f"{run.worker_pids_after}")
                else:
                    summary = f"FAILED: {run.error}"
                print(f"[{done}/{total}] r{repeat} {workload.name} {variant.name}: {summary}",
                      file=sys.stderr)
                time.sleep(1.0)  # let the closed connections and the old server settle

    add_ratios(runs, all_workloads)
    print(table(runs, variants, workloads))
    watched = [r for r in runs if r.stalls is not None]
    if watched:
        print("\nstall watch (ours; false alarms if not 0): "
              + ", ".join(f"r{r.repeat} {r.workload} {r.variant} {r.stalls} stalls "
                          f"{r.moved} moved, {r.cpu_waits} waits for a CPU"
                          for r in watched))
    for name, reason in skipped.items():
        print(f"\n{name}: skipped: {reason}")
    print("\nmedian (min-max) over repeats; ratio: sleep = req/s / (conns / 0.1 s), hello = "
          "req/s / gevent's in the same repeat; other load = CPU of other processes, % of "
          f"all {os.cpu_count()} cores")

    meta = {
        "argv": sys.argv, "args": {k: str(v) for k, v in vars(args).items()
                                   if k != "variant_list"},
        "python": sys.version, "platform": platform.platform(), "cpus": os.cpu_count(),
        "gunicorn": gunicorn_version(),
        "gevent": importlib.metadata.version("gevent"),
        "wrk_headers": WRK_HEADERS, "skipped": skipped,
        "variants": {v.name: v.label for v in variants},
        "source": source_state("gunicorn_prefork"),
    }
    write_json(json_path, meta, runs)
    print(f"\nraw results: {json_path}; server logs: {logs}/")
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
