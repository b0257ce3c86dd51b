"""A Gunicorn outside the tested range gets one warning, naming the range."""

from __future__ import annotations

import gunicorn

from gunicorn_prefork.config.tested_versions import NEWEST, OLDEST, untested


def test_inside_the_range_nothing_is_said() -> None:
    assert untested((20, 1, 0)) is None and untested((27, 0, 1)) is None
    assert untested(gunicorn.version_info) is None  # the installed one is tested


def test_a_newer_gunicorn_is_named_with_the_range() -> None:
    warning = untested((NEWEST[0] + 1, 0, 0))
    assert warning is not None
    assert f"Gunicorn {NEWEST[0] + 1}.0.0 is newer than" in warning
    assert f"{OLDEST[0]}.{OLDEST[1]} to {NEWEST[0]}.{NEWEST[1]}" in warning
    assert "older than" in (untested((19, 9, 0)) or "")
