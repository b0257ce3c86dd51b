"""fasthttp's prefork benchmark, redone for Gunicorn: our worker against the alternatives.

    python benchmarks/seed.py                        # full run: ~6-8 min on 2 cores
    python benchmarks/seed.py --duration 3 --repeats 1            # smoke test, ~1 min
    python benchmarks/seed.py --workload hello --variants prefork,gevent

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
- ``hello``: ``Hello, World!``, 64 connections; compared with ``gevent`` in the same repeat.

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
import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import free_port

HERE = Path(__file__).resolve().parent
APPS_DIR = HERE / "apps"
RESULTS_DIR = HERE / "results"
HOST = "127.0.0.1"
SLEEP_SECONDS = 0.1
COUNT_PATH = "/__count"
WRK_HEADERS = (
    "Host: localhost",
    "Accept: text/plain,text/html;q=0.9,application/xhtml+xml;q=0.9,"
    "application/xml;q=0.8,*/*;q=0.7",
    "Connection: keep-alive",
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Workload:
    name: str
    app: str
    conns: int


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    command: Callable[[argparse.Namespace, Workload, int], list[str]]


@dataclass
class WrkResult:
    rps: float | None = None
    requests: int | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    socket_errors: dict[str, int] = field(default_factory=dict)
    non_2xx_3xx: int = 0


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


# --- servers ------------------------------------------------------------------------------


def _gunicorn(args: argparse.Namespace, workload: Workload, port: int,
              *options: str) -> list[str]:
    return [str(Path(sys.executable).parent / "gunicorn"), *options, "-w", str(args.workers),
            "-b", f"{HOST}:{port}", "--log-level", "info", "--graceful-timeout", "5",
            f"seed_apps:{workload.app}"]


def _prefork(args: argparse.Namespace, workload: Workload, port: int) -> list[str]:
    return _gunicorn(args, workload, port, "-k", "gunicorn_prefork.Worker")


def _gevent(args: argparse.Namespace, workload: Workload, port: int) -> list[str]:
    return _gunicorn(args, workload, port, "-k", "gevent")


def _reuseport(args: argparse.Namespace, workload: Workload, port: int) -> list[str]:
    return _gunicorn(args, workload, port, "-k", "gevent", "--reuse-port")


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


VARIANTS = (
    Variant("prefork", "gunicorn_prefork.Worker", _prefork),
    Variant("gevent", "-k gevent (shared socket)", _gevent),
    Variant("reuseport", "-k gevent --reuse-port", _reuseport),
    Variant("granian", "granian --interface wsgi", _granian),
)


def gunicorn_major() -> int:
    return int(importlib.metadata.version("gunicorn").split(".")[0])


def skipped_variants() -> dict[str, str]:
    """Variants this machine cannot run, with the reason."""
    skipped = {}
    version = importlib.metadata.version("gunicorn")
    if gunicorn_major() < 24:
        skipped["reuseport"] = (f"Gunicorn {version} < 24: --reuse-port shares one socket, "
                                "no per-worker binds")
    if _granian_exe() is None:
        skipped["granian"] = "granian is not installed (pip install granian to include it)"
    return skipped





def _ask_count(port: int, timeout: float = 2.0) -> tuple[str, int]:
    """``GET /__count`` on a fresh connection: (pid, requests served) of whoever answers."""
    with socket.create_connection((HOST, port), timeout=timeout) as conn:
        conn.sendall(f"GET {COUNT_PATH} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
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
            pid, count = _ask_count(port)
        except (OSError, RuntimeError, ValueError):
            time.sleep(0.05)
            continue
        counts[pid] = count
    return counts


def children(pid: int) -> list[int]:
    """Child pids of every thread of ``pid``."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found += [int(child) for child in text.split()]
    return sorted(set(found))


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def system_cpu() -> tuple[float, float, float]:
    """(all, busy, interrupts) seconds of CPU time summed over all cores, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return total / CLK_TCK, (total - idle - iowait) / CLK_TCK, (irq + softirq) / CLK_TCK


@contextlib.contextmanager
def server(command: list[str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(APPS_DIR), os.environ.get("PYTHONPATH", "")) if p))
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, cwd=APPS_DIR, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes], wait_s: float = 15.0) -> None:
    """TERM to the master, a bounded wait, then SIGKILL to whatever is left of its group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            print(f"  server {proc.pid} ignored TERM for {wait_s:.0f}s; killing its group",
                  file=sys.stderr)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def wait_ready(proc: subprocess.Popen[bytes], port: int, workers: int, log_path: Path,
               deadline_s: float = 30.0) -> None:
    """Until every worker has answered ``/__count`` on a fresh connection."""
    heard: set[str] = set()
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}:\n"
                               + _tail(log_path))
        try:
            heard.add(_ask_count(port, timeout=1.0)[0])
        except (OSError, RuntimeError, ValueError):
            time.sleep(0.1)
            continue
        if len(heard) >= workers:
            return
    raise RuntimeError(f"only {len(heard)} of {workers} workers answered within "
                       f"{deadline_s:.0f}s:\n" + _tail(log_path))


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- wrk ----------------------------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def wrk_command(args: argparse.Namespace, conns: int, port: int) -> list[str]:
    command = [args.wrk]
    for header in WRK_HEADERS:
        command += ["-H", header]
    return [*command, "--latency", "-d", f"{args.duration}s", "-c", str(conns),
            "--timeout", "8", "-t", str(args.threads), f"http://{HOST}:{port}/"]


def parse_wrk(text: str) -> WrkResult:
    result = WrkResult()
    if m := re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M):
        result.rps = float(m.group(1))
    if m := re.search(r"^\s*(\d+) requests in ", text, re.M):
        result.requests = int(m.group(1))
    if m := re.search(rf"^\s*Latency\s+\S+\s+\S+\s+{_TIME}", text, re.M):
        result.max_ms = _ms(m.group(1), m.group(2))
    for pct in ("50", "90", "99"):
        if m := re.search(rf"^\s*{pct}%\s+{_TIME}\s*$", text, re.M):
            setattr(result, f"p{pct}_ms", _ms(m.group(1), m.group(2)))
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                      text):
        result.socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                                        map(int, m.groups())))
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", text):
        result.non_2xx_3xx = int(m.group(1))
    return result


# --- one run ------------------------------------------------------------------------------


def run_once(args: argparse.Namespace, variant: Variant, workload: Workload, repeat: int,
             logs: Path) -> Run:
    port = free_port()
    command = variant.command(args, workload, port)
    wrk = wrk_command(args, workload.conns, port)
    run = Run(repeat=repeat, workload=workload.name, variant=variant.name, command=command,
              wrk_command=wrk, port=port, started=dt.datetime.now().isoformat(timespec="seconds"),
              loadavg_before=Path("/proc/loadavg").read_text().strip())
    log_path = logs / f"{workload.name}-{variant.name}-{repeat}.log"
    try:
        with server(command, log_path) as proc:
            wait_ready(proc, port, args.workers, log_path)
            time.sleep(args.settle)
            workers = children(proc.pid)
            cpu_before = {pid: cpu_seconds(pid) for pid in workers}
            master_before = cpu_seconds(proc.pid)
            sys_before = system_cpu()
            wrk_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run(wrk, capture_output=True, text=True, check=False,
                                  timeout=args.duration + 60)
            wrk_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            sys_after = system_cpu()
            # Right after the run, before anything else touches the workers.
            workers_after = children(proc.pid)
            run.worker_pids_before, run.worker_pids_after = workers, workers_after
            run.worker_rss_mib = {str(pid): rss for pid in workers_after
                                  if (rss := rss_mib(pid)) is not None}
            worker_cpu = sum(cpu_seconds(pid) - cpu_before.get(pid, 0.0)
                             for pid in workers_after)
            master_cpu = cpu_seconds(proc.pid) - master_before
            wrk_cpu = ((wrk_after.ru_utime + wrk_after.ru_stime)
                       - (wrk_before.ru_utime + wrk_before.ru_stime))
            if done.returncode != 0:
                raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
            run.wrk = parse_wrk(done.stdout)
            if run.wrk.rps is None:
                raise RuntimeError(f"cannot parse wrk output:\n{done.stdout}")
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
    return run


# --- summary ------------------------------------------------------------------------------


def _spread(values: Sequence[float | None], fmt: Callable[[float], str]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    median = fmt(statistics.median(present))
    if len(present) == 1:
        return median
    return f"{median} ({fmt(min(present))}-{fmt(max(present))})"


def _fmt_ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def _fmt_ratio(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}"


def _finite(value: Any) -> Any:
    """For JSON: infinities (a worker that served nothing) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _fmt_pct(value: float) -> str:
    return f"{value:.0f}%"


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


def table(runs: list[Run], variants: Sequence[Variant], workloads: Sequence[Workload]) -> str:
    lines = [
        "| workload | variant | ok runs | req/s | p50 ms | p90 ms | p99 ms | max ms "
        "| sock err | non-2xx/3xx | worker max/min | ratio | RSS MiB | CPU µs/req | other load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for workload in workloads:
        ratio_to = (f"of {workload.conns / SLEEP_SECONDS:,.0f}" if workload.name == "sleep"
                    else "vs gevent")
        for variant in variants:
            mine = [r for r in runs if r.workload == workload.name and r.variant == variant.name]
            ok = [r for r in mine if r.wrk is not None]
            if not mine:
                continue
            w = [r.wrk for r in ok if r.wrk is not None]
            cells = [
                f"{workload.name} c{workload.conns}", variant.label, f"{len(ok)}/{len(mine)}",
                _spread([x.rps for x in w], _fmt_int),
                _spread([x.p50_ms for x in w], _fmt_ms),
                _spread([x.p90_ms for x in w], _fmt_ms),
                _spread([x.p99_ms for x in w], _fmt_ms),
                _spread([x.max_ms for x in w], _fmt_ms),
                _spread([float(sum(x.socket_errors.values())) for x in w], _fmt_int),
                _spread([float(x.non_2xx_3xx) for x in w], _fmt_int),
                _spread([r.per_worker_ratio for r in ok], _fmt_ratio),
                _spread([r.ratio for r in ok], _fmt_ratio) + (f" {ratio_to}" if ok else ""),
                _spread([r.median_rss_mib for r in ok], lambda v: f"{v:.1f}"),
                _spread([r.cpu_us_per_req for r in ok], _fmt_int),
                _spread([r.other_load_pct for r in ok], _fmt_pct),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------


def _source_state() -> dict[str, str]:
    """The commit of the checkout measured, and whether the package had local changes."""
    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], cwd=HERE.parent, capture_output=True,
                                  text=True, check=False, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {"commit": git("rev-parse", "HEAD"),
            "changes": git("status", "--porcelain", "--", "gunicorn_prefork")}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=("sleep", "hello", "all"), default="all")
    parser.add_argument("--variants", default="all",
                        help="comma-separated subset of: "
                             + ", ".join(v.name for v in VARIANTS) + " (default all)")
    parser.add_argument("--duration", type=int, default=15, help="wrk seconds per run")
    parser.add_argument("--threads", type=int, default=4, help="wrk threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sleep-conns", type=int, default=512)
    parser.add_argument("--hello-conns", type=int, default=64)
    parser.add_argument("--granian-blocking-threads", type=int, default=0,
                        help="passed as granian --blocking-threads when > 0")
    parser.add_argument("--settle", type=float, default=2.0,
                        help="seconds between every worker answering and the wrk run "
                             "(default 2)")
    parser.add_argument("--wrk", default="wrk", help="wrk executable")
    parser.add_argument("--json", type=Path, default=None,
                        help="raw results (default benchmarks/results/seed-<timestamp>.json)")
    args = parser.parse_args(argv)
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
                     "hello": Workload("hello", "hello_app", args.hello_conns)}
    workloads = (list(all_workloads.values()) if args.workload == "all"
                 else [all_workloads[args.workload]])
    wanted = ({v.name for v in VARIANTS} if args.variants == "all"
              else {name.strip() for name in args.variants.split(",")})
    unknown = wanted - {v.name for v in VARIANTS}
    if unknown:
        print(f"unknown variants: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    skipped = {k: v for k, v in skipped_variants().items() if k in wanted}
    variants = [v for v in VARIANTS if v.name in wanted and v.name not in skipped]
    if any(w.name == "hello" for w in workloads) and "gevent" not in wanted:
        print("note: hello's ratio is to gevent, which is not selected", file=sys.stderr)

    total = args.repeats * len(workloads) * len(variants)
    print(f"{total} runs of {args.duration}s ({args.workers} workers, wrk -t{args.threads}); "
          f"skipped: {skipped or 'none'}", file=sys.stderr)
    logs = json_path.with_name(json_path.stem + "-logs")
    logs.mkdir(parents=True, exist_ok=True)
    runs: list[Run] = []
    done = 0
    for repeat in range(1, args.repeats + 1):
        shift = (repeat - 1) % len(variants)
        order = variants[shift:] + variants[:shift]
        for workload in workloads:
            for variant in order:
                done += 1
                run = run_once(args, variant, workload, repeat, logs)
                runs.append(run)
                if run.wrk is not None:
                    summary = (f"{run.wrk.rps:,.0f} req/s, p99 "
                               f"{(run.wrk.p99_ms or 0):.1f} ms, "
                               f"workers {sorted(run.per_worker.values())}, "
                               f"other load {_fmt_pct(run.other_load_pct or 0)}")
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
    for name, reason in skipped.items():
        print(f"\n{name}: skipped: {reason}")
    print("\nmedian (min-max) over repeats; ratio: sleep = req/s / (conns / 0.1 s), hello = "
          "req/s / gevent's in the same repeat; other load = CPU of other processes, % of "
          f"all {os.cpu_count()} cores")

    meta = {
        "argv": sys.argv, "args": {k: str(v) for k, v in vars(args).items()},
        "python": sys.version, "platform": platform.platform(), "cpus": os.cpu_count(),
        "gunicorn": importlib.metadata.version("gunicorn"),
        "gevent": importlib.metadata.version("gevent"),
        "wrk_headers": WRK_HEADERS, "skipped": skipped,
        "variants": {v.name: v.label for v in variants},
        "source": _source_state(),
    }
    json_path.write_text(json.dumps(_finite({"meta": meta, "runs": [asdict(r) for r in runs]}),
                                    indent=1, allow_nan=False) + "\n")
    print(f"\nraw results: {json_path}; server logs: {logs}/")
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
