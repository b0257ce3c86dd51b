"""The age of the loop's current turn, as the worker's yield reads it."""

from __future__ import annotations

import time

import gevent

from gunicorn_prefork.worker import loop_turn
from gunicorn_prefork.worker.loop_turn import YIELD_SECONDS


def test_a_turn_ages_while_a_greenlet_runs_and_starts_anew_after_a_yield() -> None:
    loop_turn.install()
    ages: list[float] = []

    def busy() -> None:
        gevent.sleep(YIELD_SECONDS)        # a turn that began after install
        end = time.perf_counter() + 0.005
        while time.perf_counter() < end:  # a handler serving buffered requests
            pass
        ages.append(loop_turn.age())
        gevent.sleep(YIELD_SECONDS)        # back to the loop: a new turn
        ages.append(loop_turn.age())

    gevent.spawn(busy).join()
    assert ages[0] >= 0.005, ages
    assert ages[1] < ages[0], ages
