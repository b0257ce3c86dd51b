"""Load from wrk: its command line, running it, and what its output says.

:class:`WrkResult` holds what the tools read from wrk's text (``--latency`` output):
req/s, the request total, p50/p90/p99 and max latency in ms, socket errors and
"Non-2xx or 3xx" responses. Its fields are part of the seed benchmark's JSON.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from .servers import HOST

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_TIME = r"([\d.]+)(us|ms|s|m|h)"


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


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def wrk_command(port: int, *, duration: int, conns: int, threads: int,
                headers: Sequence[str] = (), timeout: int | None = None,
                wrk: str = "wrk", scheme: str = "http", path: str = "/") -> list[str]:
    """``wrk [-H header]... --latency -d <duration>s -c <conns> [--timeout T] -t <threads>
    SCHEME://127.0.0.1:PORT<path>`` (``scheme`` ``https`` for a TLS listener;
    ``path`` starts with ``/``)."""
    command = [wrk]
    for header in headers:
        command += ["-H", header]
    command += ["--latency", "-d", f"{duration}s", "-c", str(conns)]
    if timeout is not None:
        command += ["--timeout", str(timeout)]
    return [*command, "-t", str(threads), f"{scheme}://{HOST}:{port}{path}"]


def run_wrk(command: list[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Runs wrk to the end, its output captured (check it with :func:`wrk_result`)."""
    return subprocess.run(command, capture_output=True, text=True, check=False,
                          timeout=timeout)


def wrk_result(done: subprocess.CompletedProcess[str]) -> WrkResult:
    """What a finished wrk run says; RuntimeError if it failed or printed no req/s."""
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with {done.returncode}: {done.stderr.strip()}")
    result = parse_wrk(done.stdout)
    if result.rps is None:
        raise RuntimeError(f"cannot parse wrk output:\n{done.stdout}")
    return result


def parse_wrk(text: str) -> WrkResult:
    """Whatever of :class:`WrkResult` ``text`` (wrk's stdout) holds."""
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


def wrk_time(ms: float) -> str:
    """A latency as wrk prints it: 2 decimals in the largest unit that keeps it >= 1."""
    value, unit = ms * 1000, "us"
    for scale, name in ((1000, "ms"), (1000, "s"), (60, "m"), (60, "h")):
        if value < scale:
            break
        value, unit = value / scale, name
    return f"{value:.2f}{unit}"


def socket_errors_text(result: WrkResult) -> str:
    """The socket errors as wrk prints them (``connect 0, read 0, write 0, timeout 0``)."""
    return ", ".join(f"{kind} {count}" for kind, count in result.socket_errors.items())
