"""The status endpoint's socket and thread: a tiny HTTP/1.x server (and HAProxy agent)
in the master, that no client can make wait.

One thread of the master's own (:class:`~.master_thread.MasterThread`: signals
blocked, paused around every fork) sleeps in ``poll()`` on the listening socket and
its clients. A client sends one request: ``GET /metrics``, ``/ready`` or ``/live``
(the answer comes from ``respond``) or, for HAProxy's agent-check, any other first
line (``agent-send "agent\\n"``), answered with one line. Then the connection is
closed, after the client's unread bytes are drained (a close with unread data would
reset the answer away).

Bounds (what a slow or hostile client can take): every socket is non-blocking; a
request head over :data:`MAX_HEAD` bytes gets 431; each connection has
:data:`DEADLINE` seconds in all; at most :data:`MAX_CLIENTS` are open, and a new one
pushes out the oldest that has not finished its request (a slowloris client loses
its place, a health check gets one). Nothing blocks the master's main thread: it
only starts, wakes and stops this thread.

The listener has ``SO_REUSEPORT`` so a master started by USR2 binds the same address
while the old one still answers; before binding, a master that is not such a
successor checks that nothing else listens there (a port in use is a start-up error).
"""

from __future__ import annotations

import errno
import re
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..config.status_bind import StatusAddress
from ..errors import StartupError
from .master_thread import MasterThread

MAX_HEAD = 8192
DEADLINE = 3.0
LINGER = 1.0
MAX_CLIENTS = 128
BACKLOG = 128
ACCEPT_BATCH = 32
#: Seconds the listener is left alone after an accept failed for want of descriptors
#: or memory (``EMFILE``: a low ``nofile`` limit): it stays readable, and polling it
#: at once again would spin.
ACCEPT_PAUSE = 0.1
_OUT_OF = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

#: ``respond(method, path)`` -> (status line text, content type, body);
#: ``agent()`` -> the agent's line
Respond = Callable[[str, str], "tuple[str, str, str]"]
Agent = Callable[[], str]

_REQUEST_LINE = re.compile(rb"^([A-Z]{1,16}) (\S{1,2048}) HTTP/\d\.\d$")


@dataclass
class _Client:
    sock: socket.socket
    deadline: float
    since: float
    data: bytearray = field(default_factory=bytearray)
    out: bytes = b""
    #: "read" the request, "write" the answer, "linger" until the client closes
    phase: str = "read"


def http_answer(status: str, content_type: str, body: str) -> bytes:
    encoded = body.encode("ascii", "replace")
    head = (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(encoded)}\r\nCache-Control: no-store\r\n"
            f"Connection: close\r\n\r\n")
    return head.encode("ascii") + encoded


def answer_for(data: bytes, respond: Respond, agent: Agent) -> bytes | None:
    """The bytes to send for what a client sent so far; None: wait for more."""
    line_end = data.find(b"\n")
    if line_end < 0:
        return http_answer("431 Request Header Fields Too Large", "text/plain",
                           "request head too large\n") if len(data) >= MAX_HEAD else None
    line = bytes(data[:line_end]).rstrip(b"\r")
    match = _REQUEST_LINE.match(line)
    if match is None:  # HAProxy's agent-check (agent-send): one line back
        return agent().encode("ascii", "replace")
    if b"\r\n\r\n" not in data and b"\n\n" not in data:
        return http_answer("431 Request Header Fields Too Large", "text/plain",
                           "request head too large\n") if len(data) >= MAX_HEAD else None
    method = match.group(1).decode("ascii")
    path = match.group(2).decode("ascii", "replace").split("?", 1)[0]
    return http_answer(*respond(method, path))


def open_listener(address: StatusAddress, successor: bool) -> socket.socket:
    """Bind (non-blocking, ``SO_REUSEPORT``), and listen unless ``successor`` (a
    master started by USR2 listens once its workers serve: until then the old
    master answers alone); a bind error is a :class:`StartupError` naming the
    setting."""
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            address.host or None, address.port, type=socket.SOCK_STREAM,
            flags=socket.AI_PASSIVE)[0]
    except (OSError, UnicodeError) as exc:
        raise StartupError(f"prefork_status_bind = {str(address)!r}: cannot resolve "
                           f"{address.host!r} ({exc})") from None
    if not successor:  # nothing else may listen there (our own copy would join it)
        _bind(family, kind, proto, sockaddr, address, reuse_port=False).close()
    sock = _bind(family, kind, proto, sockaddr, address, reuse_port=True)
    sock.setblocking(False)
    if not successor:
        sock.listen(BACKLOG)
    return sock


def _bind(family: int, kind: int, proto: int, sockaddr: tuple[object, ...],
          address: StatusAddress, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        why = ("the port is in use" if exc.errno == errno.EADDRINUSE
               else exc.strerror or str(exc))
        raise StartupError(f"prefork_status_bind = {str(address)!r}: cannot listen "
                           f"there: {why}") from None
    return sock


class StatusServer(MasterThread):
    """Serves the listening socket ``sock`` from a thread of the master."""

    def __init__(self, sock: socket.socket, respond: Respond, agent: Agent,
                 listening: bool = True) -> None:
        super().__init__("gunicorn-prefork-status")
        self.sock: socket.socket | None = sock
        #: the socket listens (a USR2 successor's only binds until its workers serve)
        self.listening = listening
        self._respond = respond
        self._agent = agent
        self._clients: dict[int, _Client] = {}
        self._close_listener = False
        self._accept_after = 0.0
        #: requests answered since the start (tests and the exit summary)
        self.answered = 0

    def listen(self) -> None:
        """Start taking connections (from the main thread)."""
        if self.sock is not None and not self.listening:
            self.sock.listen(BACKLOG)
            self.listening = True
            self.wake()

    def stop_listening(self) -> None:
        """Close the listener (from the thread, at its next wake-up); the clients it
        already accepted are still answered."""
        self._close_listener = True
        self.wake()
        if not self.running:
            self._shut_listener()

    def close(self) -> None:
        """Stop the thread, close everything."""
        self.stop()
        self._shut_listener()
        for client in list(self._clients.values()):
            self._drop(client)

    def close_in_child(self) -> None:
        super().close_in_child()
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        for client in self._clients.values():
            client.sock.close()
        self._clients.clear()

    # -- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        poller_flags = {"read": select.POLLIN, "linger": select.POLLIN,
                        "write": select.POLLOUT}
        while not self.stopping:
            if self._close_listener:
                self._shut_listener()
            now = time.monotonic()
            for client in [c for c in self._clients.values() if c.deadline <= now]:
                self._drop(client)
            poller = select.poll()
            poller.register(self.wakeup_fileno(), select.POLLIN)
            paused = self._accept_after > now
            if self.sock is not None and self.listening and not paused:
                poller.register(self.sock.fileno(), select.POLLIN)
            for fd, client in self._clients.items():
                poller.register(fd, poller_flags[client.phase])
            timeout = min([c.deadline for c in self._clients.values()]
                          + ([self._accept_after] if paused else []), default=None)
            try:
                events = poller.poll(None if timeout is None
                                     else max(0.0, timeout - now) * 1000 + 1)
            except OSError:
                continue
            for fd, _ in events:
                if fd == self.wakeup_fileno():
                    self.drain_wakeups()
                elif self.sock is not None and fd == self.sock.fileno():
                    self._accept()
                elif fd in self._clients:
                    self._serve(self._clients[fd])

    def _shut_listener(self) -> None:
        """Close the listener; what is queued on it is accepted first (and answered),
        not reset by the close."""
        if self.sock is not None and self.listening and self.running:
            self._accept()
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def _accept(self) -> None:
        assert self.sock is not None
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.sock.accept()
            except OSError as exc:
                if exc.errno in _OUT_OF:
                    self._accept_after = time.monotonic() + ACCEPT_PAUSE
                return
            conn.setblocking(False)
            if len(self._clients) >= MAX_CLIENTS:
                reading = [c for c in self._clients.values() if c.phase == "read"]
                oldest = min(reading or self._clients.values(), key=lambda c: c.since)
                self._drop(oldest)
            now = time.monotonic()
            self._clients[conn.fileno()] = _Client(conn, now + DEADLINE, now)

    def _serve(self, client: _Client) -> None:
        try:
            if client.phase == "read":
                self._read(client)
            elif client.phase == "write":
                self._write(client)
            else:
                if not client.sock.recv(65536):
                    self._drop(client)
        except BlockingIOError:  # a stale event (its descriptor was reused)
            pass
        except OSError:
            self._drop(client)

    def _read(self, client: _Client) -> None:
        chunk = client.sock.recv(MAX_HEAD)
        if not chunk:
            self._drop(client)
            return
        client.data += chunk[:MAX_HEAD - len(client.data)]
        try:
            answer = answer_for(bytes(client.data), self._respond, self._agent)
        except Exception:  # never let a request end the thread
            answer = http_answer("500 Internal Server Error", "text/plain",
                                 "internal error\n")
        if answer is None:
            return
        client.out, client.phase, client.data = answer, "write", bytearray()
        self.answered += 1
        self._write(client)

    def _write(self, client: _Client) -> None:
        sent = client.sock.send(client.out)
        client.out = client.out[sent:]
        if client.out:
            return
        client.sock.shutdown(socket.SHUT_WR)
        client.phase = "linger"
        client.deadline = min(client.deadline, time.monotonic() + LINGER)

    def _drop(self, client: _Client) -> None:
        self._clients.pop(client.sock.fileno(), None)
        client.sock.close()
