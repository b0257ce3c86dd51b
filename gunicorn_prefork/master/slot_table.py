"""The master's slot table: per TCP bind, one listening SO_REUSEPORT socket per worker.

Theory of operation
-------------------
A *slot* is what one worker serves: one listening socket for each configured bind.
The master creates the slots before any worker exists and keeps them for the
server's life (the nginx model):

* a worker that exits (``max_requests``, HUP, a crash) does not take its socket's
  accept queue with it: the master still holds the socket, and the next worker
  assigned to the slot accepts what is queued;
* port 0 is resolved once, by the first socket, and every later slot binds that port;
* the port is held by *listening* sockets of the master from start to stop, so a
  process of another user can never bind it (a bound but non-listening SO_REUSEADDR
  socket would let it: see the design notes);
* on USR2 the new master adopts every slot socket, in order.

Invariants: every slot has exactly one socket per bind, in bind order; all sockets
of a bind share one resolved address; ``slots`` is in the kernel's index order of
every bind's SO_REUSEPORT group (the order of ``listen()``; a closed member's index
is taken by the last one), which is what :mod:`gunicorn_prefork.master.steering_program` programs
refer to; :meth:`SlotTable.listeners` lists the sockets slot by slot, the order
Gunicorn passes them on in ``GUNICORN_FD`` (so a new master adopts the same order).
A slot is only closed by the master once no worker holds it; a retired slot also
stops listening at once (``shutdown``), so it leaves the kernel's group when the master
retires it even while another reference keeps the socket open, and the master's
retire is the one that changes the kernel's order.

Why ``shutdown``: a ``close()`` only drops the master's descriptor. The socket stays in
the group, at its index, while anything else holds it: the stall watch's thread
asleep in ``poll()`` on it (until the poll returns), a worker forked a moment before
(until it closes the slots that are not its own), a process the app forked with the
worker's descriptors (for as long as it runs). Meanwhile the steering, programmed for
the group without it, sent new connections to it by index; when the last reference
went, the kernel reset them (rare resets in CI's TTIN/TTOU test, traced to the watch
thread's ``poll``; figures: benchmarks/README.md, "Figures behind design choices in
the code").
"""

from __future__ import annotations

import errno
import itertools
import socket
import struct
from collections.abc import Iterable, Sequence
from typing import Any

from .. import _gunicorn
from ..errors import StartupError

Address = tuple[Any, ...]


class _ReusePortMixin:
    """Gunicorn's TCP socket, with SO_REUSEPORT set before it binds."""

    def set_options(self, sock: socket.socket, bound: bool = False) -> socket.socket:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        return super().set_options(sock, bound=bound)  # type: ignore[misc,no-any-return]


class ReusePortTCPSocket(_ReusePortMixin, _gunicorn.TCPSocket):  # type: ignore[misc]
    """IPv4 listener of one slot."""


class ReusePortTCP6Socket(_ReusePortMixin, _gunicorn.TCP6Socket):  # type: ignore[misc]
    """IPv6 listener of one slot (``[::]`` also serves IPv4 where the host allows)."""


def _socket_class(address: Address) -> type[Any]:
    family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
    return ReusePortTCP6Socket if family == socket.AF_INET6 else ReusePortTCPSocket


def format_address(address: Address) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _bind_error(address: Address, exc: OSError) -> StartupError:
    where = format_address(address)
    if exc.errno == errno.EADDRINUSE:
        reason = "the address is already in use by another process"
    elif exc.errno == errno.EACCES:
        reason = "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
    elif exc.errno == errno.EADDRNOTAVAIL:
        reason = "the address is not available on this host"
    else:
        reason = str(exc)
    return StartupError(f"cannot listen on {where}: {reason}")


#: Hosts that listen on every address of their family (``[::]`` also on IPv4's
#: where the host allows it).
WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def _own_bind(address: Address, bound: Sequence[Address]) -> Address | None:
    """An address this server binds already (earlier in ``bind``) that takes
    ``address``'s port: the same address, or a wildcard on the same port."""
    for other in bound:
        if other[1] == address[1] and (
                other[0] == address[0] or other[0] in WILDCARDS or address[0] in WILDCARDS):
            return other
    return None


def _probe_free(address: Address, bound: Sequence[Address] = ()) -> None:
    """Fail fast when another process already listens on ``address``.

    A plain SO_REUSEADDR bind conflicts with any listener on the port, so it catches
    another server, even one whose sockets carry SO_REUSEPORT (which we would
    otherwise silently join and share traffic with). ``bound``: this server's
    addresses so far; a clash with one of them is named as such.
    """
    family = socket.AF_INET6 if ":" in str(address[0]) else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
    except OSError as exc:
        own = _own_bind(address, bound) if exc.errno == errno.EADDRINUSE else None
        if own is not None:
            raise StartupError(
                f"cannot listen on {format_address(address)}: this server already "
                f"listens there through its bind {format_address(own)} (the same "
                "address twice in bind, or a wildcard address that covers it); list "
                "each address once") from None
        raise _bind_error(address, exc) from None
    finally:
        probe.close()


def queued(listener: Any) -> int:
    """Connections waiting in a listening socket's accept queue (``tcpi_unacked``)."""
    sock = listener.sock
    if sock is None:
        return 0
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return 0
    return int(struct.unpack("B" * 8 + "I" * 24, info)[12])


def _stop_listening(listener: Any) -> None:
    """Stop a listening TCP socket in every process that holds it (``shutdown(SHUT_RD)``
    on a listener is the kernel's close of it: it leaves its SO_REUSEPORT group)."""
    sock = getattr(listener, "sock", None)
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass


class Slot:
    """The listeners one worker serves: one socket per bind."""

    def __init__(self, number: int, sockets: list[Any]) -> None:
        self.number = number
        self.sockets = sockets

    def queued(self) -> int:
        """Connections waiting in the slot's accept queues."""
        return sum(queued(listener) for listener in self.sockets)

    def close(self, stop_listening: bool = False) -> None:
        """Close the master's sockets; ``stop_listening``: also take them out of their
        SO_REUSEPORT groups now, whoever else holds them (only where no other master
        shares them: a USR2 overlap's other master still serves them)."""
        for listener in self.sockets:
            if stop_listening:
                _stop_listening(listener)
            listener.close()

    def __repr__(self) -> str:
        return f"<Slot {self.number}>"


class SlotTable:
    """All slots of one master, for a fixed list of resolved bind addresses."""

    def __init__(self, cfg: Any, log: Any, addresses: list[Address]) -> None:
        self.cfg = cfg
        self.log = log
        self.addresses = addresses
        self.slots: list[Slot] = []
        self._numbers = itertools.count()

    # -- building ---------------------------------------------------------------

    @classmethod
    def create(cls, cfg: Any, log: Any, binds: Sequence[Address], count: int,
               held: Iterable[Address] = ()) -> SlotTable:
        """Bind ``count`` slots on ``binds``; port 0 is resolved by the first socket.

        ``held`` lists addresses this server already listens on (a HUP that changed
        the binds): those are not probed, our own workers still hold them.
        """
        held = set(held)
        table = cls(cfg, log, [])
        first: list[Any] = []
        try:
            for bind in binds:
                if bind[1] != 0 and bind not in held:
                    _probe_free(bind, table.addresses)
                listener = table._open(bind)
                first.append(listener)
                resolved = listener.sock.getsockname()
                table.addresses.append((bind[0], resolved[1]))
            table.slots.append(Slot(next(table._numbers), first))
            table.ensure(count)
        except StartupError:
            for listener in first:
                listener.close()
            table.close()
            raise
        return table

    @classmethod
    def adopt(cls, cfg: Any, log: Any, fds: Iterable[int]) -> SlotTable:
        """Take over inherited listeners (USR2's ``GUNICORN_FD``, systemd sockets).

        Sockets of the same address are that address's slots, in the order given.
        """
        by_address: dict[Address, list[int]] = {}
        for fd in fds:
            try:
                probe = socket.socket(fileno=fd)
            except OSError as exc:
                raise StartupError(f"inherited file descriptor {fd} is not a usable "
                                   f"socket: {exc.strerror}") from None
            try:
                if probe.family not in (socket.AF_INET, socket.AF_INET6):
                    raise StartupError(
                        f"inherited socket fd {fd} ({probe.getsockname()!r}) is not a TCP "
                        f"socket; set prefork_reuseport = False to serve it as Gunicorn's "
                        f"shared socket")
                name = probe.getsockname()
                if not probe.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT):
                    raise StartupError(
                        f"inherited socket fd {fd} on {format_address(name)} has no "
                        f"SO_REUSEPORT, so no per-worker sockets can join it; for "
                        f"systemd set ReusePort=yes in the .socket unit, or set "
                        f"prefork_reuseport = False")
            finally:
                probe.detach()
            by_address.setdefault((name[0], name[1]), []).append(fd)

        table = cls(cfg, log, list(by_address))
        columns = [
            [_socket_class(address)(address, cfg, log, fd=fd) for fd in fds_of]
            for address, fds_of in by_address.items()
        ]
        depth = min((len(column) for column in columns), default=0)
        for column in columns:
            for extra in column[depth:]:
                extra.close()
        for row in range(depth):
            table.slots.append(Slot(next(table._numbers), [column[row] for column in columns]))
        return table

    def _open(self, address: Address) -> Any:
        try:
            return _socket_class(address)(address, self.cfg, self.log)
        except OSError as exc:
            raise _bind_error(address, exc) from None

    # -- growing and shrinking ---------------------------------------------------

    def add(self) -> Slot:
        """One more slot on the same resolved addresses (TTIN, more workers on HUP)."""
        opened: list[Any] = []
        try:
            for address in self.addresses:
                opened.append(self._open(address))
        except StartupError:
            for listener in opened:
                listener.close()
            raise
        slot = Slot(next(self._numbers), opened)
        self.slots.append(slot)
        return slot

    def ensure(self, count: int) -> None:
        while len(self.slots) < count:
            self.add()

    def retire(self, slot: Slot, shared: bool = False) -> None:
        """Close a slot no worker holds any more; the last slot takes its index,
        as the kernel does in the SO_REUSEPORT group. ``shared``: another master
        (USR2) holds the slots too: only the master's own descriptors close."""
        index = self.slots.index(slot)
        last = self.slots.pop()
        if last is not slot:
            self.slots[index] = last
        slot.close(stop_listening=not shared)

    def close(self) -> None:
        for slot in self.slots:
            slot.close()
        self.slots = []

    # -- views ---------------------------------------------------------------------

    def listeners(self) -> list[Any]:
        return [listener for slot in self.slots for listener in slot.sockets]

    def describe(self) -> str:
        scheme = "https" if self.cfg.is_ssl else "http"
        return ", ".join(f"{scheme}://{format_address(address)}" for address in self.addresses)
