"""A stop signal that reaches a worker before its own handlers is kept and raised
again once they are in place (:mod:`gunicorn_prefork.fork.early_signals`)."""

from __future__ import annotations

import os
import signal
from types import FrameType

from gunicorn_prefork.fork import early_signals
from tests.forked import in_forked_child


def test_a_term_before_the_handlers_reaches_them_once() -> None:
    def child() -> str:
        seen: list[int] = []
        early_signals.hold()
        os.kill(os.getpid(), signal.SIGTERM)  # the master's stop, while booting
        os.kill(os.getpid(), signal.SIGTERM)  # twice: one stop
        held = early_signals.pending()

        def handler(signum: int, frame: FrameType | None) -> None:
            seen.append(signum)

        signal.signal(signal.SIGTERM, handler)  # Gunicorn's init_signals
        early_signals.deliver()
        early_signals.deliver()  # nothing left
        return f"{list(held)} {seen}"

    assert in_forked_child(child) == f"[{int(signal.SIGTERM)}] [{int(signal.SIGTERM)}]"


def test_nothing_recorded_nothing_raised() -> None:
    def child() -> str:
        early_signals.hold()
        early_signals.deliver()
        return "alive"

    assert in_forked_child(child) == "alive"
