"""Hand-back, the loop's part: which connections wait, and starting on them.

The worker's loop offers a connection to :mod:`.claims` when it holds it without
having started on it, and claims it back before it starts:

* a connection accepted (or passed in by the master) is offered at once
  (:func:`taken`), and claimed when its handler greenlet begins (:func:`starts`:
  plain HTTP before anything is read, TLS before its handshake);
* a plain keep-alive connection is offered again while its handler waits for the
  next request (:func:`waits`, from :mod:`.request_wait`, and from the yield to the
  loop a handler makes after a response when the loop's turn is long), when nothing of that
  request has been read into Gunicorn's buffers and the previous request left no
  body unread (:func:`request_done`). The first bytes of the request are read under
  the claims' lock (:class:`ClaimSocket`'s ``recv``), so the thread either hands the
  connection back before them, or not at all.

A handed-back connection is dropped: its handler ends at once (no request, no
access log line), or reads end-of-stream (Gunicorn closes it without a word); the
worker closes its descriptor without a ``shutdown``, so the connection lives on in
the worker the master passed it to.

Never moved (never offered while waiting for a request): a TLS connection after its
handshake (its sockets are not :class:`ClaimSocket`), a connection with bytes of its
next request read (pipelined), after a request with a body, an upgrade, and any
keep-alive connection when ``proxy_protocol`` is on or the protocol is not HTTP/1
(``protocol = "uwsgi"``): the worker it would move to would parse it from its start.

Invariants: with :func:`install` not called (no hand-back: no slot, or no stall
watch) every function here is a no-op and connections are gevent's own sockets; a
connection is offered only by the loop, and closed only after :func:`closing`
(gevent's ``do_close``); nothing is handed back once the worker stops accepting
(:func:`stop`).
"""

from __future__ import annotations

from typing import Any

from gevent.socket import socket as GeventSocket

from .. import _gunicorn
from .claims import HANDED, NOTHING, STARTED, Claim, Claims

#: Methods whose requests are complete once their headers are read (no body).
BODYLESS = frozenset({"GET", "HEAD"})

_claims: Claims | None = None
#: keep-alive connections may move while they wait for their next request
_keep_alive = False


def install(claims: Claims | None, keep_alive: bool = False) -> None:
    """In a worker, before it serves: offer connections to ``claims`` (None: no
    more, gevent's own sockets again)."""
    global _claims, _keep_alive
    _claims, _keep_alive = claims, keep_alive
    _gunicorn.use_client_socket(GeventSocket if claims is None else ClaimSocket)


class ClaimSocket(GeventSocket):  # type: ignore[misc]
    """gevent's socket for a connection that may be handed back: a read while it
    waits claims it (see the module's docstring)."""

    __slots__ = ("claim", "raw")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.claim: Claim | None = None
        #: the standard socket inside (gevent's, fixed for the socket's life)
        self.raw = _gunicorn.raw_socket(self)

    def recv(self, *args: Any) -> bytes:
        claim = self.claim
        if claim is None or claim.state == STARTED:  # only the loop sets it waiting
            data: bytes = GeventSocket.recv(self, *args)
            if claim is not None and data:
                claim.clean = False  # read outside a wait (h2c prior knowledge)
            return data
        claims = _claims
        assert claims is not None
        while True:
            try:
                return claims.read(claim, self.raw.recv, *args)
            except BlockingIOError:
                pass
            _gunicorn.wait_readable(self)  # as gevent's recv waits (its watcher)


# The hooks below run on every connection or request: they look at the socket's
# type first (an attribute a gevent socket lacks costs a microsecond: its
# ``__getattr__``), and take no lock for a connection already started.

def taken(index: int, sock: Any) -> None:
    """A connection accepted (or passed in) on the slot's listener ``index``: it
    waits until its handler begins."""
    if _claims is not None and type(sock) is ClaimSocket:
        sock.claim = Claim(sock.fileno(), index)
        _claims.register(sock.claim)


def _claim_of(sock: Any) -> Claim | None:
    return sock.claim if type(sock) is ClaimSocket else None


def starts(sock: Any) -> bool:
    """Its handler begins: False when the connection was handed back (drop it)."""
    claim = _claim_of(sock)
    return claim is None or _claims is None or _claims.start(claim)


def waits(sock: Any) -> None:
    """Its handler waits for the next request (:mod:`.request_wait`)."""
    if _keep_alive and type(sock) is ClaimSocket and sock.claim is not None \
            and _claims is not None:
        _claims.offer(sock.claim)  # no lock: the thread never changes a started one


def wait_ends(sock: Any) -> None:
    """The wait is over (a request read, the time up, the connection gone)."""
    if type(sock) is ClaimSocket:
        claim = sock.claim
        if claim is not None and claim.state != STARTED and _claims is not None:
            _claims.start(claim)  # (read bytes started it already: the usual case)


def closing(sock: Any) -> None:
    """Its handler is done: it is closed now (and never handed back after)."""
    claim = _claim_of(sock)
    if claim is not None and _claims is not None:
        _claims.forget(claim)


def stop() -> None:
    """The worker stops serving: nothing is handed back any more."""
    if _claims is not None:
        _claims.close()


def handed_back(sock: Any) -> bool:
    """Was the connection handed back (the worker must not touch it)?"""
    claim = _claim_of(sock)
    return claim is not None and claim.state == HANDED


def request_done(sock: Any, request: Any) -> None:
    """A request of ``sock`` was answered: may the connection move while it waits
    for the next one?"""
    if type(sock) is ClaimSocket and sock.claim is not None:
        sock.claim.request, sock.claim.clean = request, True  # judged when it is to move


#: Request headers after which the connection does not move while it waits: a body
#: (maybe not all read), an upgrade.
KEEPS = frozenset({"CONTENT-LENGTH", "TRANSFER-ENCODING", "UPGRADE"})


def movable(claim: Claim) -> bool:
    """May this waiting connection move (the thread asks, with the loop off it)?
    Not when bytes were read outside a request's wait, nor after a request that
    left a body or read-ahead bytes behind, or upgraded."""
    return claim.clean and (claim.request is None or _movable_after(claim.request))


def _movable_after(request: Any) -> bool:
    if getattr(request, "method", None) not in BODYLESS:
        return False
    for name, _ in getattr(request, "headers", ()):
        if name in KEEPS:
            return False
    return not _gunicorn.request_read_ahead(request)


__all__ = ["NOTHING", "ClaimSocket", "closing", "handed_back", "install", "movable", "request_done",
           "starts", "stop", "taken", "wait_ends", "waits"]
