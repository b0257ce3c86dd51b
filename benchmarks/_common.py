"""Helpers the benchmark scripts share (each script runs as ``python benchmarks/X.py``)."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def worker_of(port: int, host: str = HOST, timeout: float = 5.0) -> str:
    """The ``X-Worker-Pid`` of whoever answers one request on a fresh connection."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
    for line in data.decode("latin-1").split("\r\n"):
        if line.lower().startswith("x-worker-pid:"):
            return line.split(":", 1)[1].strip()
    raise ValueError(f"no X-Worker-Pid in {data[:200]!r}")
