"""CoalescingSocket keeps bytes in order and sends small responses in one write."""

from __future__ import annotations

from typing import Any

from gunicorn_prefork.coalesce import JOIN_LIMIT, CoalescingSocket


class Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: Any, *args: Any) -> None:
        self.writes.append(bytes(data))

    def fileno(self) -> int:
        return 7


def test_headers_and_small_body_in_one_write() -> None:
    raw = Recorder()
    out = CoalescingSocket(raw)
    out.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
    out.sendall(b"hello")
    out.sendall(b" world")
    out.flush()
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nhello", b" world"]


def test_headers_only_response_is_flushed() -> None:
    raw = Recorder()
    out = CoalescingSocket(raw)
    out.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
    assert raw.writes == []
    out.flush()
    assert raw.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"]


def test_large_body_is_not_copied_and_order_is_kept() -> None:
    raw = Recorder()
    out = CoalescingSocket(raw)
    out.sendall(b"H")
    big = memoryview(b"x" * (JOIN_LIMIT + 1))
    out.sendall(big)
    assert raw.writes == [b"H", bytes(big)]


def test_any_other_use_sends_what_is_held_first() -> None:
    raw = Recorder()
    out = CoalescingSocket(raw)
    out.sendall(b"H")
    assert out.fileno() == 7
    assert raw.writes == [b"H"]
