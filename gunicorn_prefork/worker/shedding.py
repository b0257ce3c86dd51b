"""Keep-alive rebalancing, the worker's part: ending a connection gracefully when the
master says this worker holds more than its share.

A keep-alive connection stays with the worker that accepted it for its whole life;
new connections go where the fewest are held (the master's steering), but what a
burst left uneven stays uneven. So the master writes a *cap* for each slot into the
page it shares with the workers (:mod:`gunicorn_prefork.fork.progress`): while this
worker holds more connections than its cap, the next response it starts carries
``Connection: close`` and the connection ends after it, exactly as Gunicorn ends one
when the worker is stopping. The client opens a new one, which the steering sends to
a worker with room.

Only where nothing can be lost: a request without a body (``GET``/``HEAD`` without
``Content-Length`` or ``Transfer-Encoding``), no upgrade, no pipelined request waiting
(closing with unread bytes would reset the client, and requests Gunicorn has already
read past this one would never be answered: both the socket and Gunicorn's read
buffer are looked at), a response whose headers are not sent yet (decided where
Gunicorn builds its ``Connection`` header).

Invariants: never in the middle of a response; at most one connection per response
start; nothing happens while the cap is 0 or the page is not known (``install`` not
called: a worker without a slot).
"""

from __future__ import annotations

from typing import Any

from .. import _gunicorn
from .request_wait import mark_ending, next_request_waiting

_page: Any = None
_index = 0

#: Methods whose requests are complete once their headers are read (no body).
BODYLESS = frozenset({"GET", "HEAD"})


def install(page: Any, index: int) -> None:
    """In a worker: shed by ``page``'s cap for slot ``index`` (the worker keeps its
    held count there)."""
    global _page, _index
    _page, _index = page, index
    _gunicorn.install_response_headers_hook(_before_headers)


def _before_headers(response: Any) -> None:
    """Runs where Gunicorn decides a response's ``Connection`` header."""
    page = _page
    if page is None:
        return
    cap = page.cap(_index)
    if not cap or page.held(_index) <= cap or not _may_close(response):
        return
    _gunicorn.response_force_close(response)
    mark_ending()  # and the close is a lingering one: no reset for a late request
    page.count_shed(_index)


def _may_close(response: Any) -> bool:
    """Can this connection end after this response without losing anything?"""
    if _gunicorn.response_should_close(response) or _gunicorn.response_upgrade(response):
        return False  # it closes anyway, or it is not HTTP/1 afterwards
    request = _gunicorn.response_request(response)
    if request is None or getattr(request, "method", None) not in BODYLESS:
        return False
    names = {name for name, _ in getattr(request, "headers", ())}
    if "CONTENT-LENGTH" in names or "TRANSFER-ENCODING" in names:
        return False
    # a next request already read into Gunicorn's buffer, or waiting in the socket
    return not _gunicorn.request_read_ahead(request) and not next_request_waiting()
