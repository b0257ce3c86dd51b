"""A bounded HTTP load on 127.0.0.1 that counts every way a request can be lost.

Each client thread sends requests back to back, on a new connection each time
(``keepalive=False``) or on one persistent HTTP/1.1 connection (``keepalive=True``,
reconnecting only when the server says ``Connection: close``). Outcomes:

* ``served``: a complete response;
* ``refused``: the connection attempt was refused (nobody listening);
* ``reset``: the connection was reset (e.g. a listener closed with it queued);
* ``no_response``: the connection closed, or timed out, before a full response;
* ``idle_closed``: not lost: a keep-alive connection the client had left idle for at
  least the server's ``keepalive`` (the client thread was not scheduled for that
  long, on a loaded machine) was closed by the server, as any HTTP server may; the
  request is sent again on a new connection, as HTTP clients do (RFC 9112, 9.3.1).

Every attempt is also kept as a :class:`Sample` (start and end on the
``time.monotonic()`` clock, outcome, error text), so callers can compute latencies
(:meth:`LoadResult.latency_ms`) or count only what happened in a time window.

The one home of the load client, shared: the e2e tests (``tests/e2e/test_lifecycle.py``,
``test_recycling.py``, ``test_balance.py``) and ``python -m benchmarks.lifecycle``
import it as ``tests.load``, both run from the repository root (which is on
``sys.path`` there). It imports the standard library only, so a benchmark importing
it takes nothing else of the tests; ``tests/test_layout.py`` checks that and that it
is the only module the benchmarks import from the tests. Changing what it counts
changes the lifecycle tool's columns too (its JSON records this file's state).
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import NamedTuple


class Sample(NamedTuple):
    """One request attempt: ``time.monotonic()`` at its start (before connecting, on a
    new connection) and when its outcome was known, the outcome, and the error text."""

    start: float
    end: float
    outcome: str
    detail: str = ""

    @property
    def latency(self) -> float:
        return self.end - self.start


@dataclass
class LoadResult:
    counts: Counter[str] = field(default_factory=Counter)
    workers: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list, repr=False)

    @property
    def lost(self) -> int:
        return self.counts["refused"] + self.counts["reset"] + self.counts["no_response"]

    def latency_ms(self, percentile: float, started_before: float | None = None) -> float | None:
        """Nearest-rank ``percentile`` (0-100) of the served requests' latencies in ms,
        optionally only of requests started before ``started_before``; None if none."""
        values = sorted(s.latency for s in self.samples if s.outcome == "served"
                        and (started_before is None or s.start < started_before))
        if not values:
            return None
        rank = min(max(1, math.ceil(len(values) * percentile / 100)), len(values))
        return values[rank - 1] * 1000

    def __str__(self) -> str:
        return (f"served={self.counts['served']} refused={self.counts['refused']} "
                f"reset={self.counts['reset']} no_response={self.counts['no_response']} "
                f"idle_closed={self.counts['idle_closed']} "
                f"workers={len(self.workers)} first errors={self.errors[:3]}")

    #: what a failed ``assert result.lost == 0, result`` prints: the error texts
    __repr__ = __str__


def _read_response(conn: socket.socket, buffer: bytes) -> tuple[dict[str, str], bytes]:
    """One response (headers + Content-Length body); returns headers and leftover bytes."""
    while b"\r\n\r\n" not in buffer:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError("closed before the response headers")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            raise EOFError("closed in the middle of the body")
        rest += chunk
    return headers, rest[length:]


class Load:
    """``concurrency`` client threads until :meth:`stop` (or ``max_seconds``)."""

    def __init__(self, port: int, concurrency: int = 16, keepalive: bool = False,
                 path: str = "/", host: str = "127.0.0.1", max_seconds: float = 60.0,
                 timeout: float = 10.0, server_keepalive: float = 2.0) -> None:
        self.address = (host, port)
        self.concurrency = concurrency
        self.keepalive = keepalive
        self.request = (f"GET {path} HTTP/1.1\r\nHost: test\r\n"
                        + ("" if keepalive else "Connection: close\r\n") + "\r\n").encode()
        self.deadline = time.monotonic() + max_seconds
        self.timeout = timeout
        #: Gunicorn's ``keepalive`` (default 2 s): how long the server may keep an
        #: idle connection open
        self.server_keepalive = server_keepalive
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True)
                         for _ in range(concurrency)]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> LoadResult:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return self.result

    def _count(self, started: float, outcome: str, detail: str = "", worker: str = "") -> None:
        ended = time.monotonic()
        with self._lock:
            self.result.samples.append(Sample(started, ended, outcome, detail))
            self.result.counts[outcome] += 1
            if worker:
                self.result.workers[worker] += 1
            if detail and len(self.result.errors) < 20:
                self.result.errors.append(f"{outcome}: {detail}")

    def _running(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self.deadline

    def _client(self) -> None:
        conn: socket.socket | None = None
        buffer = b""
        idle_since = 0.0  # when the last response on ``conn`` was read
        while self._running():
            fresh = conn is None
            started = time.monotonic()
            idled = not fresh and started - idle_since >= self.server_keepalive
            try:
                if conn is None:
                    conn = socket.create_connection(self.address, timeout=self.timeout)
                    buffer = b""
                conn.sendall(self.request)
                headers, buffer = _read_response(conn, buffer)
            except ConnectionRefusedError as exc:
                self._count(started, "refused", str(exc))
                conn = None
                time.sleep(0.01)
                continue
            except (ConnectionResetError, BrokenPipeError, EOFError) as exc:
                if idled:
                    self._count(started, "idle_closed", f"idle {started - idle_since:.1f}s")
                elif isinstance(exc, EOFError):
                    self._count(started, "no_response", f"{'new' if fresh else 'reused'} "
                                f"connection: {exc}")
                else:
                    self._count(started, "reset",
                                f"{'new' if fresh else 'reused'} connection: {exc}")
            except (TimeoutError, OSError) as exc:
                self._count(started, "no_response",
                            f"{'new' if fresh else 'reused'} connection: {exc}")
            else:
                self._count(started, "served", worker=headers.get("x-worker-pid", ""))
                idle_since = time.monotonic()
                if self.keepalive and headers.get("connection", "").lower() != "close":
                    continue
            if conn is not None:
                conn.close()
            conn = None
        if conn is not None:
            conn.close()
