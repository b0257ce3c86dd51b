"""A connection the worker ends itself closes gently
(:mod:`gunicorn_prefork.worker.lingering_close`): the peer reads the whole response
and then the end of the stream, not a reset, though it sent more meanwhile."""

from __future__ import annotations

import socket

import gevent
import gevent.socket

from gunicorn_prefork.worker import request_wait
from gunicorn_prefork.worker.lingering_close import _wrap, linger


def _pair() -> tuple[gevent.socket.socket, socket.socket]:
    ours, peer = gevent.socket.socketpair()
    return ours, socket.socket(fileno=peer.detach())


def test_the_peer_reads_the_response_then_the_end_not_a_reset() -> None:
    ours, peer = _pair()
    with peer:
        ours.sendall(b"the response")
        peer.sendall(b"GET /next HTTP/1.1\r\n\r\n")  # sent before it saw the close
        closer = gevent.spawn(lambda: (linger(ours, 5.0), ours.close()))
        gevent.sleep(0.01)
        assert peer.recv(100) == b"the response"
        assert peer.recv(100) == b""  # the end of the stream
        peer.close()  # the client closes its side: the linger ends at once
        closer.join(5)
        assert closer.successful()


def test_a_peer_that_never_closes_is_waited_for_at_most_the_limit() -> None:
    ours, peer = _pair()
    with peer:
        waited = gevent.spawn(linger, ours, 0.05)
        waited.join(5)
        assert waited.ready() and waited.successful()
        ours.close()


def test_only_a_connection_marked_as_ending_lingers() -> None:
    closed: list[object] = []
    close = _wrap(closed.append)

    def handler(mark: bool) -> bool:
        ours, peer = _pair()
        with peer:
            request_wait.serving(ours)
            if mark:
                request_wait.mark_ending()
            close(ours)
            try:
                ours.send(b"x")
            except OSError:  # shut down for writing: it lingered
                return True
            return False

    assert gevent.spawn(handler, True).get() is True
    assert gevent.spawn(handler, False).get() is False
    assert len(closed) == 2  # Gunicorn's own close, both times
