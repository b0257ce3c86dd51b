"""``prefork_status_bind``: where the master's status endpoint listens, and whether
that clashes with an application bind.

The value is ``HOST:PORT`` (``127.0.0.1:9101``, ``[::1]:9101``, ``0.0.0.0:9101``;
port 0 picks a free port, logged at start). It must not be an application address:
the status socket is opened with ``SO_REUSEPORT`` (so a USR2 master can share it
with the old one) and would otherwise join, or shadow, the group of the application's
per-worker sockets. :func:`clash` finds that before anything is bound.

Invariants: parsing never touches the network; :func:`clash` resolves names with
``getaddrinfo`` (numeric results) and treats a wildcard address (``0.0.0.0``, ``::``)
as every address of the host.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

_WILDCARDS = {"0.0.0.0", "::", ""}


@dataclass(frozen=True)
class StatusAddress:
    """A parsed ``prefork_status_bind``."""

    host: str
    port: int

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __repr__(self) -> str:  # as written in a configuration ("changed on reload")
        return repr(str(self))


def parse(value: object) -> StatusAddress | None:
    """``"HOST:PORT"`` (None or ``""``: off); raises ValueError with what was expected."""
    expected = "expected HOST:PORT (127.0.0.1:9101, [::1]:9101), or None for off"
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(expected)
    text = value.strip()
    if not text:
        return None
    if text.startswith("unix:") or "/" in text:
        raise ValueError("a TCP address is needed (load balancers and Prometheus "
                         "probe over TCP): " + expected)
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ValueError(expected)
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(expected)
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address: {expected}") from None
    elif ":" in host:
        raise ValueError("write an IPv6 address in brackets: " + expected)
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{port_text!r} is not a port number: {expected}") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range (0-65535)")
    return StatusAddress(host, port)


def _addresses(host: str, port: int) -> set[str]:
    """The numeric addresses ``host`` names (itself when it does not resolve)."""
    if host in _WILDCARDS:
        return {""}
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return {host}
    return {str(info[4][0]) for info in infos} or {host}


def clash(status: StatusAddress, binds: Iterable[object]) -> str | None:
    """The application bind ``status`` would share a port with, formatted; None if
    none. ``binds`` are Gunicorn's ``cfg.address`` entries (``(host, port)`` tuples,
    or a string/bytes for a unix socket, which cannot clash)."""
    if status.port == 0:
        return None
    mine = _addresses(status.host, status.port)
    for bind in binds:
        if not isinstance(bind, tuple) or len(bind) < 2 or bind[1] != status.port:
            continue
        theirs = _addresses(str(bind[0]), status.port)
        if "" in mine or "" in theirs or mine & theirs:
            host = str(bind[0])
            return f"[{host}]:{bind[1]}" if ":" in host else f"{host}:{bind[1]}"
    return None
