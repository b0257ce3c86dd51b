"""What clients see while workers recycle, crash, scale and restart, under load.

    python -m benchmarks.lifecycle                          # full matrix, ~10 min
    python -m benchmarks.lifecycle --events hup,term --mode close --seconds 5
    python -m benchmarks.lifecycle --variants prefork --clients 32 --json /tmp/x.json

(from the repository root, like every tool in ``benchmarks/``).

For each event, each mode and each server variant in turn, the tool starts a fresh
server on 127.0.0.1 (``--workers`` workers, 3 by default; the ``gunicorn`` console
script next to ``sys.executable``, never ``python -m gunicorn``, which breaks USR2;
the app is ``tests/apps/app.py``), waits until every worker answers, runs the threaded
load of ``tests/load.py`` (``--clients`` threads, 16 by default) for ``--seconds``
(10 by default), triggers the event during the load, stops the load and then stops
the server and everything it started (by process group). Load goes to 127.0.0.1 only.

Variants:

- ``prefork``: ours, ``-k gunicorn_prefork.Worker`` (one SO_REUSEPORT socket per worker);
- ``gevent``: ``-k gevent`` on Gunicorn's shared socket;
- ``reuseport``: ``-k gevent --reuse-port``, only with Gunicorn >= 24 (each worker binds
  its own socket after the fork).

Events (times from the start of the load):

- ``max_requests``: the server runs with ``--max-requests 300 --max-requests-jitter 50``
  (several recycles per second); no signal;
- ``sigkill``: SIGKILL to the oldest worker every 2 s (ours runs with
  ``prefork_recover_threshold = 0``, otherwise its crash threshold halts the master);
- ``sigkill_1s``: the same every 1 s from 1 s (a worker that crashes over and over);
- ``hup``: SIGHUP to the master every 2 s;
- ``ttin_ttou``: TTOU, TTIN, TTOU, ... to the master every 1.5 s;
- ``usr2_term``: USR2 at 2 s; once the new master (the old master's child that is not
  one of its workers) has all its workers and 1.5 s have passed, TERM to the old master;
  the new master is stopped after the load. If the new master dies or never gets its
  workers (Gunicorn >= 24 with ``--reuse-port``), the old master is left running and
  the notes say so;
- ``term``: TERM to the master at 2 s; the load goes on until 1 s after the master
  exited. Only requests *started before the master's exit was observed* are counted in
  served/reset/refused/no response, p99 and req/s; the refusals after the exit (nobody
  listens any more, as expected) are in the notes as ``+N refused after exit``, and
  OutRsts is read at the exit.

Modes (``--mode close|keepalive|both``, both by default): ``close`` opens a new
connection per request (``Connection: close``); ``keepalive`` keeps one HTTP/1.1
connection per client, reconnecting when the server closes it.

Columns: served, reset, refused, no response are the outcomes counted by
``tests/load.py``; p99 is of the served requests, from the start of the attempt
(connecting included, on a new connection) to the full response; OutRsts is the delta
of the kernel's ``Tcp: OutRsts`` (``/proc/net/snmp``) from the start to the end of the
load: resets sent by every socket of the network namespace, clients' included (a SYN to
a port nobody listens on is answered by one); other CPU is the CPU time used meanwhile by
user-space processes other than this tool and the server, as a share of all cores (a
concurrent test run shows up there).

Network namespace (``--netns auto|on|off``): ``/proc/net/snmp`` counts per network
namespace, so with ``auto`` (default) the tool re-executes itself under
``unshare --net`` when it may (root), with only its own loopback up: connections of
other processes (tests running concurrently) stay out of OutRsts and ports cannot
collide. ``off`` stays in the current namespace, where OutRsts counts everyone's resets.

Written: each server's config and log in ``--logs`` (default
``/tmp/lifecycle/<timestamp>/<event>-<mode>-<variant>/``) and the raw results as JSON
(``--json``, default ``benchmarks/results/lifecycle-<timestamp>.json``): per run the
counts, latencies, actions with their times, the first errors (with the last action
before each), findings in the server log, load average and other CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fcntl
import importlib.metadata
import os
import platform
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# the load client's one home, shared with the e2e tests (see its docstring)
from tests.load import Load, LoadResult, Sample

from .masterlog import stall_summary
from .procfs import alive, children, loadavg, other_cpu_pct, process_cpu
from .results import (
    RESULTS_DIR,
    argument_parser,
    fmt_number,
    md_header,
    md_row,
    source_state,
    subset,
    write_json,
)
from .servers import (
    GEVENT,
    GUNICORN,
    PREFORK,
    REUSEPORT,
    ROOT,
    Server,
    free_port,
    gunicorn_command,
    gunicorn_version,
    reuseport_skip_reason,
)

APPS_DIR = ROOT / "tests" / "apps"
NETNS_ENV = "GUNICORN_PREFORK_LIFECYCLE_NETNS"
OUTCOMES = ("served", "reset", "refused", "no_response")
EVENTS = ("max_requests", "sigkill", "sigkill_1s", "hup", "ttin_ttou", "usr2_term", "term")
MODES = ("close", "keepalive")
GRACEFUL_TIMEOUT = 10
#: Lines of the server log worth counting, by what they mean.
LOG_MARKS = {
    "recycled": "Autorestarting worker",
    "booted": "Booting worker",
    "timeouts": "WORKER TIMEOUT",
    "errors": "[ERROR]",
    "critical": "[CRITICAL]",
    "tracebacks": "Traceback",
    "prefork_crashes": "crashed:",
}


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    options: tuple[str, ...]
    ours: bool = False


VARIANTS = (
    Variant("prefork", "ours", PREFORK, ours=True),
    Variant("gevent", "gevent shared", GEVENT),
    Variant("reuseport", "gevent --reuse-port", REUSEPORT),
)


@dataclass
class Run:
    event: str
    mode: str
    variant: str
    command: list[str]
    port: int
    log: str
    started: str
    counts: dict[str, int] = field(default_factory=dict)
    after_exit: dict[str, int] = field(default_factory=dict)
    rps: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    out_rsts: int | None = None
    out_rsts_whole_load: int | None = None
    workers_served: int = 0
    load_seconds: float | None = None
    master_exit_s: float | None = None
    master_status: int | None = None
    actions: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    first_errors: list[dict[str, Any]] = field(default_factory=list)
    log_findings: dict[str, int] = field(default_factory=dict)
    log_problems: list[str] = field(default_factory=list)
    other_cpu_pct: float | None = None
    loadavg_before: str = ""
    loadavg_after: str = ""
    error: str | None = None

    @property
    def lost(self) -> int:
        return sum(self.counts.get(k, 0) for k in ("reset", "refused", "no_response"))


# --- the machine ------------------------------------------------------------------------


def out_rsts() -> int:
    """The kernel's ``Tcp: OutRsts`` counter of this network namespace."""
    tcp = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()
           if line.startswith("Tcp:")]
    return int(tcp[1][tcp[0].index("OutRsts")])


def bring_loopback_up() -> None:
    """``ip link set lo up``, without needing iproute2."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock, siocgifflags, request))[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH22x", b"lo", flags | iff_up))


def can_unshare_net() -> bool:
    try:
        return subprocess.run(["unshare", "--net", "true"], capture_output=True,
                              timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# --- one server -------------------------------------------------------------------------


class LifecycleServer(Server):
    """A gunicorn master run from its own directory (config, log, ``new_master.pid``);
    reads OutRsts the moment the master exits."""

    def __init__(self, command: list[str], run_dir: Path) -> None:
        super().__init__(command, run_dir / "gunicorn.log", apps=APPS_DIR, cwd=run_dir,
                         append=True)
        self.run_dir = run_dir
        self.exit_out_rsts: int | None = None

    def on_exit(self) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            self.exit_out_rsts = out_rsts()


# --- events -----------------------------------------------------------------------------


class Clock:
    """Times relative to the start of the load, and the actions taken at them."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def until(self, t: float) -> None:
        if (left := self.t0 + t - time.monotonic()) > 0:
            time.sleep(left)

    def act(self, what: str, **details: Any) -> None:
        self.run.actions.append({"t": round(self.now(), 3), "what": what, **details})


def _signal_every(server: LifecycleServer, clock: Clock, seconds: float, start: float,
                  every: float, pick: Callable[[int], tuple[int, int, str]]) -> None:
    """At start, start + every, ... (while at least 1 s of load is left): ``pick(i)``
    gives (pid, signal, label) of the i-th action."""
    t, i = start, 0
    while t <= seconds - 1.0 and not server.exited.is_set():
        clock.until(t)
        pid, sig, label = pick(i)
        if pid > 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                clock.act(label, pid=pid)
        t, i = t + every, i + 1
    clock.until(seconds)


def event_none(server: LifecycleServer, clock: Clock, seconds: float, workers: int) -> None:
    clock.until(seconds)


def _kill_oldest_worker(server: LifecycleServer) -> Callable[[int], tuple[int, int, str]]:
    def pick(_: int) -> tuple[int, int, str]:
        pids = [pid for pid in children(server.pid) if pid != server.pid]
        return (min(pids) if pids else 0), signal.SIGKILL, "SIGKILL worker"
    return pick


def event_sigkill(server: LifecycleServer, clock: Clock, seconds: float, workers: int) -> None:
    _signal_every(server, clock, seconds, 2.0, 2.0, _kill_oldest_worker(server))


def event_sigkill_1s(server: LifecycleServer, clock: Clock, seconds: float,
                     workers: int) -> None:
    _signal_every(server, clock, seconds, 1.0, 1.0, _kill_oldest_worker(server))


def event_hup(server: LifecycleServer, clock: Clock, seconds: float, workers: int) -> None:
    _signal_every(server, clock, seconds, 2.0, 2.0,
                  lambda _: (server.pid, signal.SIGHUP, "SIGHUP"))


def event_ttin_ttou(server: LifecycleServer, clock: Clock, seconds: float, workers: int) -> None:
    def pick(i: int) -> tuple[int, int, str]:
        sig = signal.SIGTTOU if i % 2 == 0 else signal.SIGTTIN
        return server.pid, sig, signal.Signals(sig).name
    _signal_every(server, clock, seconds, 1.5, 1.5, pick)


def event_term(server: LifecycleServer, clock: Clock, seconds: float, workers: int) -> None:
    clock.until(2.0)
    server.signal(signal.SIGTERM)
    clock.act("SIGTERM master", pid=server.pid)
    if server.exited.wait(GRACEFUL_TIMEOUT + 10):
        assert server.exit_time is not None
        clock.act("master exited", status=server.status())
        clock.until(server.exit_time - clock.t0 + 1.0)
    else:
        clock.run.notes.append(f"master still running {GRACEFUL_TIMEOUT + 10}s after TERM")


def event_usr2_term(server: LifecycleServer, clock: Clock, seconds: float, workers: int) -> None:
    run = clock.run
    clock.until(2.0)
    old_workers = set(children(server.pid))
    server.signal(signal.SIGUSR2)
    usr2_at = clock.now()
    clock.act("SIGUSR2 master", pid=server.pid)
    new_master = 0
    deadline = time.monotonic() + 20
    failure = "no new master within 20s"
    while time.monotonic() < deadline and not server.exited.is_set():
        if not new_master:
            candidates = [pid for pid in children(server.pid) if pid not in old_workers]
            if candidates:
                new_master = candidates[0]
                clock.act("new master seen", pid=new_master)
                failure = f"new master {new_master} never had {workers} workers within 20s"
        elif not alive(new_master):
            failure = f"new master {new_master} died {clock.now():.1f}s into the load"
            clock.act("new master died", pid=new_master)
            break
        elif len(new_kids := children(new_master)) >= workers:
            time.sleep(1.5)  # let them boot and serve; the same workers must still be there
            if alive(new_master) and set(new_kids) <= set(children(new_master)):
                clock.act("new master has its workers", pid=new_master, workers=new_kids)
                failure = ""
                break
        time.sleep(0.05)
    if new_master:
        server.run_dir.joinpath("new_master.pid").write_text(f"{new_master}\n")
    if failure:
        run.notes.append(f"USR2 failed: {failure}; old master left running")
        clock.until(seconds)
        return
    server.signal(signal.SIGTERM)
    clock.act("SIGTERM old master", pid=server.pid)
    term_at = clock.now()
    if server.exited.wait(GRACEFUL_TIMEOUT + 10):
        assert server.exit_time is not None
        clock.act("old master exited", status=server.status())
        run.notes.append(f"old master: TERM {term_at - usr2_at:.1f}s after USR2, exit "
                         f"{server.exit_time - clock.t0 - term_at:.1f}s later "
                         f"(status {server.status()})")
    else:
        run.notes.append("old master still running after TERM")
    clock.until(max(seconds, clock.now() + 1.5))


EVENT_DRIVERS: dict[str, Callable[[LifecycleServer, Clock, float, int], None]] = {
    "max_requests": event_none,
    "sigkill": event_sigkill,
    "sigkill_1s": event_sigkill_1s,
    "hup": event_hup,
    "ttin_ttou": event_ttin_ttou,
    "usr2_term": event_usr2_term,
    "term": event_term,
}


def stop_new_master(server: LifecycleServer, run: Run) -> None:
    """After usr2_term: TERM the new master, wait a bounded time (the group goes later)."""
    path = server.run_dir / "new_master.pid"
    if not path.exists():
        return
    pid = int(path.read_text())
    if not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACEFUL_TIMEOUT + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        run.notes.append(f"new master {pid} ignored TERM; killed")


# --- one run ----------------------------------------------------------------------------


def config_text(variant: Variant, event: str) -> str:
    lines = ["# written by benchmarks/lifecycle.py",
             "control_socket_disable = True  # gunicorn 25+; ignored before",
             f"graceful_timeout = {GRACEFUL_TIMEOUT}"]
    if variant.ours and event.startswith("sigkill"):
        lines.append("prefork_recover_threshold = 0  # never halt on the kills")
    return "\n".join(lines) + "\n"


def command_for(args: argparse.Namespace, variant: Variant, event: str, port: int,
                config: Path) -> list[str]:
    extra = ["--log-level", args.log_level]
    if event == "max_requests":
        extra += ["--max-requests", "300", "--max-requests-jitter", "50"]
    return gunicorn_command(variant.options, args.workers, port, "app:app", *extra,
                            config=config)


def _relative(samples: Sequence[Sample], t0: float, actions: list[dict[str, Any]],
              limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` errors, with their time and the last action before each."""
    found = []
    for sample in sorted(samples, key=lambda s: s.end):
        if sample.outcome == "served":
            continue
        t = sample.end - t0
        before = [a for a in actions if a["t"] <= t]
        after = f"{before[-1]['what']} +{t - before[-1]['t']:.3f}s" if before else "start"
        found.append({"t_start": round(sample.start - t0, 3), "t_end": round(t, 3),
                      "after": after, "outcome": sample.outcome, "detail": sample.detail})
        if len(found) >= limit:
            break
    return found


def summarize(run: Run, result: LoadResult, t0: float, stopped: float,
              cutoff: float | None) -> None:
    """Counts, latencies and first errors; with ``cutoff`` (term) only for requests that
    started before it, the rest going to ``after_exit``."""
    counted = [s for s in result.samples if cutoff is None or s.start < cutoff]
    later = [s for s in result.samples if cutoff is not None and s.start >= cutoff]
    run.counts = {k: 0 for k in OUTCOMES} | dict(Counter(s.outcome for s in counted))
    run.after_exit = dict(Counter(s.outcome for s in later))
    window = (cutoff if cutoff is not None else stopped) - t0
    run.load_seconds = round(stopped - t0, 3)
    if window > 0:
        run.rps = round(run.counts["served"] / window, 1)
    run.p50_ms = result.latency_ms(50, cutoff)
    run.p99_ms = result.latency_ms(99, cutoff)
    run.max_ms = result.latency_ms(100, cutoff)
    run.workers_served = len(result.workers)
    run.first_errors = _relative(counted, t0, run.actions, 20)
    if later:
        what = ", ".join(f"{n} {k}" for k, n in run.after_exit.items())
        run.notes.append(f"+{len(later)} after exit ({what})")


def read_log(run: Run, text: str) -> None:
    """Counts of notable log lines, and the first problems; for ``sigkill`` the lines
    about the kills themselves are expected and left out."""
    expected = ("was sent SIGKILL", "killed by SIGKILL") if run.event.startswith("sigkill") else ()
    lines = [line for line in text.splitlines() if not any(e in line for e in expected)]
    run.log_findings = {name: sum(mark in line for line in lines)
                        for name, mark in LOG_MARKS.items()}
    run.log_findings["recycled"] = text.count(LOG_MARKS["recycled"])
    if (summary := stall_summary(text)) is not None:
        run.log_findings["stalls"], run.log_findings["moved"] = summary
    problems = [line for line in lines
                if any(mark in line for mark in ("[ERROR]", "[CRITICAL]", "Error", "crashed"))]
    run.log_problems = problems[:20]


def run_once(args: argparse.Namespace, variant: Variant, event: str, mode: str,
             logs: Path) -> Run:
    port = free_port()
    run_dir = logs / f"{event}-{mode}-{variant.name}"
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "gunicorn.conf.py"
    config.write_text(config_text(variant, event))
    command = command_for(args, variant, event, port, config)
    run = Run(event=event, mode=mode, variant=variant.name, command=command, port=port,
              log=str(run_dir / "gunicorn.log"),
              started=dt.datetime.now().isoformat(timespec="seconds"),
              loadavg_before=loadavg())
    server = LifecycleServer(command, run_dir)
    try:
        server.start()
        server.wait_serving(port, args.workers)
        cpu_before = process_cpu()
        rsts_before = out_rsts()
        load = Load(port, concurrency=args.clients, keepalive=mode == "keepalive",
                    max_seconds=args.seconds + 90, timeout=args.timeout).start()
        clock = Clock(run)
        clock.t0 = time.monotonic()
        try:
            EVENT_DRIVERS[event](server, clock, args.seconds, args.workers)
        finally:
            result = load.stop()
            stopped = time.monotonic()
            rsts_after = out_rsts()
            cpu_after = process_cpu()
        run.other_cpu_pct = other_cpu_pct(cpu_before, cpu_after, server.pid, stopped - clock.t0)
        run.out_rsts_whole_load = rsts_after - rsts_before
        cutoff = None
        if server.exited.is_set() and server.exit_time is not None:
            run.master_exit_s = round(server.exit_time - clock.t0, 3)
            run.master_status = server.status()
            if event == "term":
                cutoff = server.exit_time
            elif event != "usr2_term":
                run.notes.append(f"master exited (status {run.master_status}) "
                                 f"at {run.master_exit_s:.1f}s")
        run.out_rsts = (server.exit_out_rsts - rsts_before
                        if cutoff is not None and server.exit_out_rsts is not None
                        else run.out_rsts_whole_load)
        summarize(run, result, clock.t0, stopped, cutoff)
        if event == "term" and run.master_exit_s is not None:
            term_at = next(a["t"] for a in run.actions if a["what"] == "SIGTERM master")
            refused = [s.end - clock.t0 for s in result.samples if s.outcome == "refused"]
            listening = (f"first refusal {min(refused) - term_at:.1f}s, " if refused else "")
            run.notes.insert(0, f"after TERM: {listening}master exit "
                                f"{run.master_exit_s - term_at:.1f}s (status "
                                f"{run.master_status})")
    except (RuntimeError, OSError, ValueError) as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        stop_new_master(server, run)
        server.stop()
        run.loadavg_after = loadavg()
        read_log(run, server.log())
    return run


# --- output -----------------------------------------------------------------------------

def notes_cell(run: Run) -> str:
    if run.error:
        return f"**error**: {run.error}"
    notes = list(run.notes)
    actions = Counter(a["what"] for a in run.actions
                      if a["what"].startswith("SIG") and a["what"] != "SIGTERM master")
    if actions and run.event != "usr2_term":
        notes.insert(0, ", ".join(f"{n} x {what}" for what, n in actions.items()))
    if run.event == "max_requests":
        notes.insert(0, f"{run.log_findings.get('recycled', 0)} recycles")
    for name in ("errors", "critical", "tracebacks", "timeouts"):
        if count := run.log_findings.get(name):
            notes.append(f"log: {count} {name}")
    if "stalls" in run.log_findings:
        notes.append(f"{run.log_findings['stalls']} stalls, "
                     f"{run.log_findings.get('moved', 0)} moved")
    return "; ".join(notes)


COLUMNS = ("event", "mode", "variant", "served", "req/s", "reset", "refused", "no resp",
           "p50 ms", "p99 ms", "max ms", "OutRsts", "other CPU", "notes")
ALIGN = ("---", "---", "---", *["--:"] * 10, "---")


def table(runs: Sequence[Run]) -> str:
    labels = {v.name: v.label for v in VARIANTS}
    lines = [md_header(COLUMNS, ALIGN)]
    for run in runs:
        c = run.counts
        mark = "**" if run.variant == "prefork" and run.lost else ""
        losses = ["" if run.error else f"{mark}{c.get(k, 0)}{mark}" for k in OUTCOMES[1:]]
        lines.append(md_row([
            run.event, run.mode, labels.get(run.variant, run.variant),
            f"{c.get('served', 0):,}" if not run.error else "",
            fmt_number(run.rps, 0), *losses, fmt_number(run.p50_ms, 2), fmt_number(run.p99_ms),
            fmt_number(run.max_ms, 0), "" if run.out_rsts is None else str(run.out_rsts),
            "n/a" if run.other_cpu_pct is None else f"{run.other_cpu_pct:.0f}%",
            notes_cell(run)]))
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argument_parser(__doc__)
    parser.add_argument("--events", default="all",
                        help="comma-separated subset of: " + ", ".join(EVENTS))
    parser.add_argument("--variants", default="all",
                        help="comma-separated subset of: " + ", ".join(v.name for v in VARIANTS))
    parser.add_argument("--mode", choices=("close", "keepalive", "both"), default="both")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds of load per run (default 10; term: until 1 s after "
                             "the master exited)")
    parser.add_argument("--clients", type=int, default=16, help="client threads (default 16)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers (default 3)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="client socket timeout in seconds (default 10)")
    parser.add_argument("--log-level", default="info", help="gunicorn --log-level (info)")
    parser.add_argument("--netns", choices=("auto", "on", "off"), default="auto",
                        help="run in a private network namespace (default auto: if possible)")
    parser.add_argument("--logs", type=Path,
                        default=Path(tempfile.gettempdir()) / "lifecycle",
                        help="server configs and logs go to LOGS/<timestamp>/ "
                             "(default /tmp/lifecycle)")
    parser.add_argument("--json", type=Path, default=None,
                        help="raw results (default benchmarks/results/lifecycle-<timestamp>"
                             ".json)")
    args = parser.parse_args(argv)
    args.event_list = subset(parser, args.events, EVENTS, "--events")
    args.variant_list = subset(parser, args.variants, [v.name for v in VARIANTS],
                                "--variants")
    args.mode_list = list(MODES) if args.mode == "both" else [args.mode]
    if not 1 <= args.clients <= 256:
        parser.error("--clients must be within 1..256")
    if not 1 <= args.workers <= 16:
        parser.error("--workers must be within 1..16")
    if not 3.0 <= args.seconds <= 300:
        parser.error("--seconds must be within 3..300")
    if not GUNICORN.exists():
        parser.error(f"no gunicorn console script next to {sys.executable} ({GUNICORN})")
    return args


def enter_netns(args: argparse.Namespace, argv: Sequence[str]) -> bool:
    """Re-execute under ``unshare --net`` if asked and possible (does not return then).
    Returns whether this process runs in a private namespace."""
    if os.environ.get(NETNS_ENV) == "1":
        bring_loopback_up()
        return True
    if args.netns == "off":
        return False
    if not can_unshare_net():
        if args.netns == "on":
            sys.exit("--netns on: `unshare --net` is not permitted here")
        print("note: cannot create a network namespace (unshare --net); OutRsts counts "
              "resets of every process on this machine", file=sys.stderr)
        return False
    os.environ[NETNS_ENV] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp("unshare", ["unshare", "--net", "--", sys.executable, "-m", "benchmarks.lifecycle",
                          *argv])
    raise AssertionError("unreachable")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    netns = enter_netns(args, argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    json_path: Path = args.json or RESULTS_DIR / f"lifecycle-{stamp}.json"
    logs: Path = args.logs / stamp
    logs.mkdir(parents=True, exist_ok=True)

    skipped = {}
    if reason := reuseport_skip_reason():
        skipped["reuseport"] = reason
    variants = [v for v in VARIANTS if v.name in args.variant_list and v.name not in skipped]
    total = len(args.event_list) * len(args.mode_list) * len(variants)
    meta: dict[str, Any] = {
        "argv": argv, "started": dt.datetime.now().isoformat(timespec="seconds"),
        "gunicorn": gunicorn_version(), "gevent": importlib.metadata.version("gevent"),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "kernel": platform.release(), "netns": netns, "logs": str(logs),
        "loadavg_start": loadavg(), "skipped": skipped,
        "source": source_state("gunicorn_prefork", "tests/load.py"),
        "seconds": args.seconds, "clients": args.clients, "workers": args.workers}
    print(f"gunicorn {meta['gunicorn']}, gevent {meta['gevent']}, Python {meta['python']}, "
          f"{meta['cpus']} CPUs, load {meta['loadavg_start']}; "
          f"{'private' if netns else 'shared'} network namespace; {total} runs of "
          f"~{args.seconds:g}s; logs in {logs}", file=sys.stderr)
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}", file=sys.stderr)

    runs: list[Run] = []
    done = 0
    for event in args.event_list:
        for mode in args.mode_list:
            for variant in variants:
                done += 1
                print(f"[{done}/{total}] {event} {mode} {variant.name} ...", end=" ",
                      file=sys.stderr, flush=True)
                run = run_once(args, variant, event, mode, logs)
                runs.append(run)
                print(run.error or ", ".join(f"{k}={v}" for k, v in run.counts.items()),
                      file=sys.stderr, flush=True)
                meta["loadavg_end"] = loadavg()
                write_json(json_path, meta, runs)

    print(f"\n{total} runs, {args.seconds:g} s of load each, {args.clients} clients, "
          f"{args.workers} workers; gunicorn {meta['gunicorn']}; load average "
          f"{meta['loadavg_start']} -> {meta['loadavg_end'] if runs else loadavg()}.")
    print("reset/refused/no resp: what the clients saw; p50/p99/max: latency of served "
          "requests; OutRsts: kernel Tcp OutRsts delta over the load"
          + (" (private network namespace: this run's sockets only)" if netns else
             " (whole machine)")
          + "; other CPU: other processes' share of all cores. term: counts, req/s, "
          "latencies and OutRsts only for requests started before the master exited; "
          "what came later is in the notes.\n")
    print(table(runs))
    for name, reason in skipped.items():
        print(f"\nskipped {name}: {reason}")
    print(f"\nraw results: {json_path}\nserver logs: {logs}")
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
