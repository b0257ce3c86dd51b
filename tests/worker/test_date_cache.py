from __future__ import annotations

from gunicorn import util

from gunicorn_prefork.worker import date_cache


def test_same_string_as_gunicorn_within_a_second() -> None:
    first = date_cache.http_date()
    assert first == date_cache.http_date()
    assert first.endswith(" GMT") and len(first) == 29
    assert date_cache.http_date(0) == util.http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
