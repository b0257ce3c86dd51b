"""The worker's end of the rescue channel (:mod:`gunicorn_prefork.worker.rescue_inbox`),
with a real channel and gevent's hub: what the inbox reads it serves, and after
``stop()`` it reads nothing more."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import gevent
import pytest

from gunicorn_prefork.master.rescue import PROBE, Channel
from gunicorn_prefork.worker.rescue_inbox import Inbox


class Server:
    """A slot server's ``serve_passed``: records which connections it got."""

    def __init__(self) -> None:
        self.served: list[socket.socket] = []

    def serve_passed(self, fd: int) -> None:
        self.served.append(socket.socket(fileno=fd))


@pytest.fixture
def channel() -> Iterator[Channel]:
    channel = Channel.open()
    yield channel
    channel.close()


def _client() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair()


def test_a_moved_connection_is_served_and_a_probe_answered(channel: Channel) -> None:
    server, probes = Server(), []
    inbox = Inbox(os.dup(channel.worker_end.fileno()), [server], lambda: probes.append(1))
    inbox.start()
    ours, theirs = _client()
    assert channel.send(0, theirs.fileno()) and channel.send(PROBE)
    gevent.sleep(0.05)
    inbox.stop()
    assert len(server.served) == 1 and probes == [1]
    for sock in (ours, theirs, *server.served):
        sock.close()


def test_nothing_is_read_after_stop_even_when_the_read_was_woken_in_the_same_turn(
        channel: Channel) -> None:
    """The hub wakes the inbox for a message in the same loop turn in which another
    callback stops it (a worker leaving): the message stays in the channel."""
    server = Server()
    fd = os.dup(channel.worker_end.fileno())
    inbox = Inbox(fd, [server], lambda: None)  # reads that descriptor
    # started before the inbox waits: libev runs this callback first in the turn
    # in which the channel turns readable
    stopper = gevent.get_hub().loop.io(fd, 1)

    def stop_once() -> None:
        stopper.stop()
        inbox.stop()

    stopper.start(stop_once)
    inbox.start()
    gevent.sleep(0)  # the inbox waits for the channel
    ours, theirs = _client()
    assert channel.send(0, theirs.fileno())
    try:
        gevent.sleep(0.05)
    finally:
        stopper.stop()
        stopper.close()
    assert server.served == []
    left = channel.take_left()
    assert [index for index, _ in left] == [0], "the message must stay for the next worker"
    for sock in (ours, theirs, *(conn for _, conn in left)):
        sock.close()
