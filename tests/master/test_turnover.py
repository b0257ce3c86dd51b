"""Short connections are told from staying ones (:mod:`gunicorn_prefork.master.turnover`)."""

from __future__ import annotations

from gunicorn_prefork.master.turnover import FLOOR, LIMIT, WINDOW, Turnover


def test_staying_connections_are_weighed() -> None:
    turnover = Turnover()
    assert not turnover.update(0.0, taken=0, held=0)
    assert not turnover.update(WINDOW, taken=32, held=32)  # a burst of keep-alive ones
    assert not turnover.update(2 * WINDOW, taken=32, held=32)
    # 500 opened a second, one after another, and kept: taken fast, none ended
    assert not turnover.update(3 * WINDOW, taken=282, held=282)


def test_short_connections_are_not() -> None:
    turnover = Turnover()
    turnover.update(0.0, taken=30, held=30)
    assert turnover.update(WINDOW, taken=3030, held=30)  # 6,000 end a second, 30 held
    # it stays so until the next window has passed
    assert turnover.update(WINDOW + 0.1, taken=3030, held=30)
    rate = LIMIT * 30 / 2
    assert not turnover.update(2 * WINDOW, taken=3030 + int(rate * WINDOW), held=30)


def test_a_few_short_requests_beside_kept_connections_are_not() -> None:
    turnover = Turnover()
    turnover.update(0.0, taken=1, held=1)
    # health checks: 15 a second, one held connection
    assert not turnover.update(WINDOW, taken=1 + int(15 * WINDOW), held=1)
    assert LIMIT * FLOOR > 15


def test_a_new_table_starts_over() -> None:
    turnover = Turnover()
    turnover.update(0.0, taken=5000, held=1)
    assert not turnover.update(WINDOW, taken=10, held=1)  # counters of new slots
