"""Differential test: on the wire, the worker answers exactly as Gunicorn's ``-k gevent``.

Both servers run the same echo app (``tests/apps/echo.py``) with the same config, one
worker each, started once for the module. Every case sends the same raw bytes over a
raw socket to both and compares what came back, parsed: each response's status line,
headers (in order, except ``Date`` and the per-process ``X-Worker-Pid``) and body (the
chunk sizes too, when chunked), and how the connection ended (closed by the server,
reset, or still open when the client gave up). A case's expectations are whatever
stock Gunicorn does on the installed version, and that differs between versions:
27.0 answers smuggling (Content-Length with Transfer-Encoding), obs-folds, ``G(T``,
``HTTP/9.9``, a TLS ClientHello and the HTTP/2 preface with a 4xx; 20.1 serves the
first four and the preface's ``PRI *`` line, sends the app's body after a HEAD
response's headers, and closes on a ClientHello without a response. Only a
difference between the two servers fails.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.server import free_port, running

CONFIG = """\
bind = "127.0.0.1:{port}"
workers = 1
worker_class = "{worker}"
keepalive = 1                       # an idle keep-alive connection closes after 1 s
limit_request_line = 1024
limit_request_field_size = 1024
limit_request_fields = 20
"""

#: ``fast`` in tox's ``gunicorn271-h1c`` env: both servers parse with Gunicorn's C
#: parser (``gunicorn_h1c``); Gunicorn refuses to start without it, so a missing or
#: broken install fails here instead of falling back to the Python parser.
HTTP_PARSER = os.environ.get("PREFORK_TEST_HTTP_PARSER", "")
if HTTP_PARSER:
    CONFIG += f'http_parser = "{HTTP_PARSER}"\n'

#: The same, behind a proxy: the PROXY protocol accepted from 127.0.0.1 (Gunicorn's
#: default ``proxy_allow_ips``), forwarding headers trusted only from 10.1.2.3, and
#: the application mounted at /app (``SCRIPT_NAME`` in the environment).
PROXIED_CONFIG = CONFIG + """\
proxy_protocol = True
forwarded_allow_ips = "10.1.2.3"
raw_env = ["SCRIPT_NAME=/app"]
"""

#: Response headers that name the serving process or the moment, not the request.
IGNORED_HEADERS = {"date", "x-worker-pid"}

#: Longest wait for the server's next bytes before a case counts the connection open.
READ_TIMEOUT = 4.0


@dataclass(frozen=True)
class Case:
    #: what the client sends, in parts; between parts it waits for a response head
    #: (an interim ``100 Continue``), at most :data:`READ_TIMEOUT`
    parts: tuple[bytes, ...]
    #: the client shuts down its sending side after the last part (real clients
    #: rarely do; it ends a case at once); without it the server closes the
    #: connection after its keepalive (1 s) or a ``Connection: close``
    half_close: bool = True
    #: the responses answer HEAD requests: no body whatever the Content-Length
    head: bool = False


@dataclass
class Exchange:
    responses: list[tuple[str, list[tuple[str, str]], bytes, list[int]]] = field(
        default_factory=list)
    #: what followed the last complete response and could not be parsed as one
    trailing: bytes = b""
    #: "closed" (EOF), "reset" (ECONNRESET) or "open" (nothing for READ_TIMEOUT s)
    end: str = ""


def _hello_bytes() -> bytes:
    """A real TLS ClientHello, as a browser would send to an https:// URL."""
    context = ssl.create_default_context()
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(),
                           server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


H = b"Host: test\r\n"
CLIENT_HELLO = _hello_bytes()  # once: both servers get the same random bytes

CASES: dict[str, Case] = {
    "get-http11": Case((b"GET /path?q=1 HTTP/1.1\r\n" + H + b"Accept: */*\r\n\r\n",)),
    "get-http11-kept-open": Case((b"GET / HTTP/1.1\r\n" + H + b"\r\n",), half_close=False),
    "get-http10": Case((b"GET / HTTP/1.0\r\n" + H + b"\r\n",), half_close=False),
    "get-http10-keep-alive": Case(
        (b"GET / HTTP/1.0\r\n" + H + b"Connection: keep-alive\r\n\r\n",), half_close=False),
    "head": Case((b"HEAD / HTTP/1.1\r\n" + H + b"\r\n",), head=True),
    "status-204": Case((b"GET /status/204 HTTP/1.1\r\n" + H + b"\r\n",)),
    "status-304": Case((b"GET /status/304 HTTP/1.1\r\n" + H + b"\r\n",)),
    "status-304-http10": Case((b"GET /status/304 HTTP/1.0\r\n" + H + b"\r\n",)),
    "stream-chunked-response": Case((b"GET /stream HTTP/1.1\r\n" + H + b"\r\n",)),
    "stream-http10": Case((b"GET /stream HTTP/1.0\r\n" + H + b"\r\n",)),
    "post-content-length": Case(
        (b"POST /echo HTTP/1.1\r\n" + H
         + b"Content-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",)),
    "post-chunked-body": Case(
        (b"POST /echo HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
         b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",)),
    "smuggling-cl-and-te": Case(
        (b"POST /echo HTTP/1.1\r\n" + H
         + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n" + H + b"\r\n",)),
    "two-content-lengths": Case(
        (b"POST /echo HTTP/1.1\r\n" + H
         + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",)),
    "obs-fold-continuation": Case(
        (b"GET / HTTP/1.1\r\n" + H + b"X-Folded: first\r\n  second\r\n\r\n",)),
    "request-line-too-long": Case(
        (b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\n" + H + b"\r\n",)),
    "header-too-long": Case((b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 1100 + b"\r\n\r\n",)),
    "too-many-headers": Case(
        (b"GET / HTTP/1.1\r\n" + H
         + b"".join(b"X-H%d: v\r\n" % n for n in range(25)) + b"\r\n",)),
    "pipelined-three": Case(
        (b"GET /one HTTP/1.1\r\n" + H + b"\r\n"
         b"POST /two HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc"
         b"GET /status/204 HTTP/1.1\r\n" + H + b"\r\n"
         b"GET /four HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
         b"GET /never HTTP/1.1\r\n" + H + b"\r\n",), half_close=False),
    "pipelined-five-keep-alive": Case(
        (b"".join(b"GET /%d HTTP/1.1\r\n" % n + H + b"\r\n" for n in range(5)),)),
    "expect-100-continue": Case(
        (b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n",
         b"hello")),
    "invalid-method": Case((b"G(T / HTTP/1.1\r\n" + H + b"\r\n",)),
    "lowercase-method": Case((b"get / HTTP/1.1\r\n" + H + b"\r\n",)),
    "bad-http-version": Case((b"GET / HTTP/9.9\r\n" + H + b"\r\n",)),
    "garbage-http-version": Case((b"GET / HTTX/1.1\r\n" + H + b"\r\n",)),
    "tls-client-hello": Case((CLIENT_HELLO,), half_close=False),
    "tls-client-hello-then-close": Case((CLIENT_HELLO,)),
    "h2-prior-knowledge-preface": Case((b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",)),
    "empty-then-close": Case((b"",)),
    "blank-line-then-close": Case((b"\r\n",)),
    "partial-request-then-close": Case((b"GET / HTTP/1.1\r\nHost: te",)),
}

#: What a proxy in front adds; served by both configurations (127.0.0.1, the test's
#: peer, is trusted for forwarding headers by default and not in PROXIED_CONFIG).
FORWARDED = b"X-Forwarded-Proto: https\r\nX-Forwarded-For: 10.9.8.7\r\n"
PROXY_LINE = b"PROXY TCP4 10.1.2.3 10.0.0.1 4711 80\r\n"
FORWARDING_CASES: dict[str, Case] = {
    "forwarded-proto-and-for": Case((b"GET /app/ HTTP/1.1\r\n" + H + FORWARDED + b"\r\n",)),
    "forwarded-ssl-on": Case((b"GET /app/ HTTP/1.1\r\n" + H + b"X-Forwarded-Ssl: on\r\n\r\n",)),
    "forwarded-conflicting-schemes": Case(
        (b"GET /app/ HTTP/1.1\r\n" + H + b"X-Forwarded-Proto: https\r\n"
         b"X-Forwarded-Ssl: off\r\n\r\n",)),
    "forwarded-on-three-keep-alive-requests": Case(
        (b"".join(b"GET /app/%d HTTP/1.1\r\n" % n + H + FORWARDED + b"\r\n" for n in range(3)),)),
    "script-name-header": Case(
        (b"GET /app/x HTTP/1.1\r\n" + H + b"Script-Name: /app\r\n\r\n",)),
    "path-outside-script-name": Case((b"GET /other HTTP/1.1\r\n" + H + b"\r\n",)),
    "proxy-line-then-forwarded": Case(
        (PROXY_LINE + b"GET /app/ HTTP/1.1\r\n" + H + FORWARDED + b"\r\n"
         b"GET /app/again HTTP/1.1\r\n" + H + FORWARDED + b"\r\n",)),
    "proxy-line-malformed": Case((b"PROXY TCP4 nonsense\r\nGET /app/ HTTP/1.1\r\n" + H + b"\r\n",)),
}


def _recv_until(conn: socket.socket, buf: bytearray, done, deadline: float) -> str:
    """Read into ``buf`` until ``done(buf)``, EOF, a reset or ``deadline``."""
    while not done(buf):
        left = deadline - time.monotonic()
        if left <= 0:
            return "open"
        conn.settimeout(left)
        try:
            chunk = conn.recv(65536)
        except (socket.timeout, TimeoutError):
            return "open"
        except ConnectionResetError:
            return "reset"
        if not chunk:
            return "closed"
        buf += chunk
    return ""


def exchange(port: int, case: Case) -> tuple[bytes, str]:
    buf = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT) as conn:
        for index, part in enumerate(case.parts):
            if index:  # wait for an interim (or final) response head first
                end = _recv_until(conn, buf, lambda b: b"\r\n\r\n" in b,
                                  time.monotonic() + READ_TIMEOUT)
                if end:
                    return bytes(buf), end
            if part:
                conn.sendall(part)
        if case.half_close:
            conn.shutdown(socket.SHUT_WR)
        end = _recv_until(conn, buf, lambda b: False, time.monotonic() + READ_TIMEOUT)
    return bytes(buf), end


def parse(raw: bytes, end: str, head: bool) -> Exchange:
    """Split what a server sent into responses, by HTTP/1.1 framing."""
    result = Exchange(end=end)
    rest = raw
    while rest:
        head_end = rest.find(b"\r\n\r\n")
        if head_end < 0:
            break
        lines = rest[:head_end].decode("latin-1").split("\r\n")
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
        values = dict(headers)
        status = int(lines[0].split()[1]) if len(lines[0].split()) > 1 else 0
        body_at = head_end + 4
        chunks: list[int] = []
        if (head and status >= 200) or status < 200 or status in (204, 304):
            body, rest = b"", rest[body_at:]
        elif "content-length" in values:
            length = int(values["content-length"])
            if len(rest) - body_at < length:
                break
            body, rest = rest[body_at:body_at + length], rest[body_at + length:]
        elif values.get("transfer-encoding", "").lower() == "chunked":
            body, at = b"", body_at
            while True:
                size_end = rest.find(b"\r\n", at)
                if size_end < 0:
                    break
                size = int(rest[at:size_end].split(b";")[0], 16)
                chunks.append(size)
                body += rest[size_end + 2:size_end + 2 + size]
                at = size_end + 2 + size + 2
                if size == 0:
                    break
            rest = rest[at:]
        else:  # delimited by the end of the connection
            body, rest = rest[body_at:], b""
        kept = [(name, value) for name, value in headers if name not in IGNORED_HEADERS]
        result.responses.append((lines[0], kept, body, chunks))
    result.trailing = rest
    return result


@contextlib.contextmanager
def _pair(tmp_path_factory: pytest.TempPathFactory, config: str,
          path: str = "/") -> Iterator[dict[str, int]]:
    """``-k gevent`` and ours, one worker each, on ``config`` (serving ``path``)."""
    with running(tmp_path_factory.mktemp("gevent"), app="echo:app",
                 config=config.format(port=(gevent_port := free_port()),
                                      worker="gevent")) as stock, \
         running(tmp_path_factory.mktemp("prefork"), app="echo:app",
                 config=config.format(port=(prefork_port := free_port()),
                                      worker="gunicorn_prefork.Worker")) as ours:
        stock.wait_serving(gevent_port, 1, path=path)
        ours.wait_serving(prefork_port, 1, path=path)
        yield {"gevent": gevent_port, "prefork": prefork_port}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    with _pair(tmp_path_factory, CONFIG) as ports:
        yield ports


@pytest.fixture(scope="module")
def proxied_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    with _pair(tmp_path_factory, PROXIED_CONFIG, path="/app/") as ports:
        yield ports


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_same_as_gevent_worker(servers: dict[str, int], case: Case) -> None:
    raw = {name: exchange(port, case) for name, port in servers.items()}
    parsed = {name: parse(data, end, case.head) for name, (data, end) in raw.items()}
    assert parsed["prefork"] == parsed["gevent"], raw


@pytest.mark.parametrize("case", list(FORWARDING_CASES.values()), ids=list(FORWARDING_CASES))
def test_forwarding_the_same_as_gevent_worker(servers: dict[str, int],
                                              proxied_servers: dict[str, int],
                                              case: Case) -> None:
    for pair in (servers, proxied_servers):
        raw = {name: exchange(port, case) for name, port in pair.items()}
        parsed = {name: parse(data, end, case.head) for name, (data, end) in raw.items()}
        assert parsed["prefork"] == parsed["gevent"], raw


def test_forwarding_cases_reach_the_app_trusted_or_not(
        servers: dict[str, int], proxied_servers: dict[str, int]) -> None:
    """The forwarding cases show trust: https from the trusted peer, http behind the
    proxy (10.1.2.3 is trusted there, and the PROXY line names it as the client);
    behind it the application is mounted at /app."""
    case = FORWARDING_CASES["forwarded-proto-and-for"]
    trusted = parse(*exchange(servers["gevent"], case), False).responses[0][2]
    assert b"wsgi.url_scheme= https" in trusted
    untrusted = parse(*exchange(proxied_servers["gevent"], case), False).responses[0][2]
    assert b"wsgi.url_scheme= http\n" in untrusted and b"SCRIPT_NAME= /app\n" in untrusted
    case = FORWARDING_CASES["proxy-line-then-forwarded"]
    behind = parse(*exchange(proxied_servers["gevent"], case), False).responses
    assert all(b"REMOTE_ADDR= 10.1.2.3" in r[2] for r in behind) and len(behind) == 2


def test_the_corpus_reaches_the_app_and_the_parser(servers: dict[str, int]) -> None:
    """The cases are not all refused alike: a few land in the app, a few are 4xx."""
    got = {name: parse(*exchange(servers["gevent"], CASES[name]), CASES[name].head)
           for name in ("get-http11", "post-chunked-body", "request-line-too-long")}
    assert got["get-http11"].responses[0][2].startswith(b"GET /path?q=1 HTTP/1.1\n")
    assert got["post-chunked-body"].responses[0][2].endswith(b"\n\nhello world")
    assert got["request-line-too-long"].responses[0][0].startswith("HTTP/1.1 4")
