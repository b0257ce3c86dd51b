"""Keep-alive rebalancing, the worker's part (:mod:`gunicorn_prefork.worker.shedding`):
its decision at the start of each response, through real Gunicorn ``Response``
objects (their ``default_headers``, where the hook runs) and a real shared page.
Over the master's cap, a complete bodyless request's connection ends after its
response (``Connection: close``) and is counted as shed; at or under the cap, with
no cap (0), with a request body, a pipelined request waiting, or a connection that
closes anyway, it is kept (and nothing counted).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import gevent
import pytest
from gunicorn.config import Config
from gunicorn.http import RequestParser
from gunicorn.http.wsgi import Response

from gunicorn_prefork.fork.progress import ProgressPage
from gunicorn_prefork.worker import request_wait, shedding

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


class Page:
    """The worker's slot in a shared page, with the cap the master wrote."""

    def __init__(self) -> None:
        self.page = ProgressPage(8)
        index = self.page.index_for("this worker's slot")
        assert index is not None
        self.index = index

    def holding(self, held: int, cap: int) -> None:
        self.page.set_held(self.index, held)
        self.page.set_cap(self.index, cap)

    @property
    def shed(self) -> int:
        return self.page.shed(self.index)


@pytest.fixture
def slot() -> Iterator[Page]:
    original = Response.default_headers
    made = Page()
    shedding.install(made.page, made.index)
    yield made
    shedding.install(None, 0)  # the module forgets the page
    Response.default_headers = original


def _connection_header(raw: bytes = GET) -> str:
    """The ``Connection`` header Gunicorn gives the response to ``raw``."""
    cfg = Config()
    server, client = socket.socketpair()
    with server, client:
        client.sendall(raw)
        request = next(iter(RequestParser(cfg, server, ("127.0.0.1", 1))))
    response = Response(request, None, cfg)
    response.start_response("200 OK", [("Content-Length", "2")])
    lines = [line for line in response.default_headers() if line.startswith("Connection:")]
    return lines[0].strip()


def test_over_the_cap_a_get_ends_after_its_response(slot: Page) -> None:
    slot.holding(held=6, cap=5)
    assert _connection_header() == "Connection: close"
    assert slot.shed == 1
    assert _connection_header(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n") == "Connection: close"
    assert slot.shed == 2


def test_at_or_under_the_cap_the_connection_is_kept(slot: Page) -> None:
    for held in (5, 4, 0):
        slot.holding(held=held, cap=5)
        assert _connection_header() == "Connection: keep-alive"
    assert slot.shed == 0


def test_no_cap_no_shedding(slot: Page) -> None:
    slot.holding(held=100, cap=0)
    assert _connection_header() == "Connection: keep-alive"
    assert slot.shed == 0


def test_a_request_with_a_body_is_kept(slot: Page) -> None:
    slot.holding(held=6, cap=5)
    post = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab"
    assert _connection_header(post) == "Connection: keep-alive"
    get_with_body = b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab"
    assert _connection_header(get_with_body) == "Connection: keep-alive"
    chunked = (b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"2\r\nab\r\n0\r\n\r\n")
    assert _connection_header(chunked) == "Connection: keep-alive"
    assert slot.shed == 0


def test_a_connection_that_closes_anyway_is_not_counted(slot: Page) -> None:
    slot.holding(held=6, cap=5)
    asked = b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    assert _connection_header(asked) == "Connection: close"
    http10 = b"GET / HTTP/1.0\r\nHost: t\r\n\r\n"  # no keep-alive asked for
    assert _connection_header(http10) == "Connection: close"
    assert slot.shed == 0


def test_a_pipelined_request_waiting_keeps_the_connection(slot: Page) -> None:
    """Closing with unread bytes would reset the client: the request already sent."""
    slot.holding(held=6, cap=5)

    def handler() -> str:  # a connection's greenlet, as the worker runs it
        ours, peer = socket.socketpair()
        with ours, peer:
            request_wait.serving(ours)
            peer.sendall(GET)  # the client's next request, already here
            return _connection_header()

    assert gevent.spawn(handler).get() == "Connection: keep-alive"
    assert slot.shed == 0


def test_a_worker_without_a_page_never_sheds(slot: Page) -> None:
    slot.holding(held=6, cap=5)
    shedding.install(None, 0)  # a worker without a slot
    assert _connection_header() == "Connection: keep-alive"
    assert slot.shed == 0


def test_a_pipelined_request_already_read_keeps_the_connection(slot: Page) -> None:
    """Issue 28: requests sent in the same packet sit in Gunicorn's read buffer, not
    in the socket: the socket looks empty, but ending the connection would drop them."""
    slot.holding(held=6, cap=5)
    assert _connection_header(GET + GET + GET) == "Connection: keep-alive"
    assert slot.shed == 0
    assert _connection_header(GET) == "Connection: close"  # nothing behind it: shed
    assert slot.shed == 1
