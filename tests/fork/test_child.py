from __future__ import annotations

import gunicorn_prefork


def test_not_a_child_outside_a_worker() -> None:
    assert gunicorn_prefork.is_child() is False
