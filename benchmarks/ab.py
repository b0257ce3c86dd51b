"""Load from ApacheBench (``ab``): per-request latencies on fresh connections.

wrk's latency percentiles are not per request when every request opens a new
connection (``Connection: close``): one run reported a 416 ms mean over 44,720
requests made by 64 connections in 8 s, more waiting than 64 connections can hold
in 8 s. ``ab`` times each request from its ``connect()`` to the last byte (so time
spent in a listener's accept queue counts), and prints its percentiles in whole
milliseconds. Debian: ``apt-get install -y apache2-utils``.

The result has :class:`~benchmarks.wrk.WrkResult`'s shape, so the tools print both
the same way.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .servers import HOST
from .wrk import WrkResult


def ab_command(port: int, *, duration: int, conns: int, keepalive: bool = False,
               timeout: int = 10, path: str = "/", per_request: Path | None = None
               ) -> list[str]:
    """``ab -q -r -s T -c C -t D -n BIG [-k] [-g FILE] http://127.0.0.1:PORT/``: as many
    requests as ``duration`` seconds allow, socket errors counted instead of fatal;
    ``per_request``: where ab writes every request's times (see :func:`slow_requests`)."""
    command = ["ab", "-q", "-r", "-s", str(timeout), "-c", str(conns),
               "-t", str(duration), "-n", "100000000"]
    if per_request is not None:
        command += ["-g", str(per_request)]
    if keepalive:
        command.append("-k")
    return [*command, f"http://{HOST}:{port}{path}"]


def run_ab(command: list[str], timeout: float | None = None,
           output: Path | None = None) -> WrkResult:
    """Run ab to the end (its stdout and stderr also to ``output``); RuntimeError if
    it failed or printed no req/s."""
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          timeout=timeout)
    if output is not None:
        output.write_text(done.stdout + done.stderr)
    result = parse_ab(done.stdout)
    if result.rps is None:
        raise RuntimeError(f"ab exited with {done.returncode}: {done.stderr.strip()}\n"
                           f"{done.stdout}")
    return result


def parse_ab(text: str) -> WrkResult:
    """Whatever of the result ``text`` (ab's stdout) holds."""
    result = WrkResult()
    if m := re.search(r"^Requests per second:\s+([\d.]+)", text, re.M):
        result.rps = float(m.group(1))
    if m := re.search(r"^Complete requests:\s+(\d+)", text, re.M):
        result.requests = int(m.group(1))
    for pct in ("50", "90", "99", "100"):
        if m := re.search(rf"^\s*{pct}%\s+(\d+)", text, re.M):
            setattr(result, "max_ms" if pct == "100" else f"p{pct}_ms", float(m.group(1)))
    if m := re.search(r"\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)",
                      text):
        result.socket_errors = dict(zip(("connect", "receive", "exceptions"),
                                        map(int, m.groups())))
    if m := re.search(r"^Non-2xx responses:\s+(\d+)", text, re.M):
        result.non_2xx_3xx = int(m.group(1))
    return result


def slow_requests(per_request: Path, over_ms: float = 1000.0) -> int:
    """How many requests in ab's ``-g`` file took longer than ``over_ms`` (the tail
    that percentiles of tens of thousands of requests do not show)."""
    slow = 0
    for line in per_request.read_text().splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) >= 5 and fields[4].strip().isdigit() and int(fields[4]) > over_ms:
            slow += 1
    return slow
