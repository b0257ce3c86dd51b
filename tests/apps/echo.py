"""Echo app for the differential test: the response is a function of the request only.

``/status/NNN`` answers with that status (no body for 1xx, 204 and 304); ``/stream``
answers in three writes without a Content-Length (chunked on HTTP/1.1); every other
path echoes the method, path, query, protocol, request headers and body, and what the
server made of the connection: ``wsgi.url_scheme``, ``REMOTE_ADDR``, ``SCRIPT_NAME``
and, behind the PROXY protocol, the addresses it carried. Nothing per-connection
(the client's own port, the server's port) goes into the response; the serving
worker's pid goes into ``X-Worker-Pid`` only, which the test ignores.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

REASONS = {200: "OK", 204: "No Content", 304: "Not Modified", 404: "Not Found",
           418: "I'm a teapot"}


def _echo(environ: dict[str, Any]) -> bytes:
    lines = [f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')}"
             f"?{environ.get('QUERY_STRING', '')} {environ.get('SERVER_PROTOCOL', '')}"]
    for key in sorted(environ):
        if key.startswith("HTTP_") or key in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            lines.append(f"{key}: {environ[key]}")
    connection = ["wsgi.url_scheme", "REMOTE_ADDR", "SCRIPT_NAME"]
    if "PROXY_PROTOCOL" in environ:
        connection += ["PROXY_PROTOCOL", "REMOTE_PORT", "PROXY_ADDR", "PROXY_PORT"]
    lines += [f"{key}= {environ.get(key)}" for key in connection]
    body = environ["wsgi.input"].read()
    return ("\n".join(lines) + "\n\n").encode("latin-1") + body


def _stream() -> Iterator[bytes]:
    yield b"first\n"
    yield b""
    yield b"second\n"
    yield b"third\n"


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    pid = ("X-Worker-Pid", str(os.getpid()))
    if path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        environ["wsgi.input"].read()
        start_response(f"{code} {REASONS.get(code, 'Status')}", [pid])
        return []
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain"), pid])
        return _stream()
    body = _echo(environ)
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body))), pid])
    return [body]
