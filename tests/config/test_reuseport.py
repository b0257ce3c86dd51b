"""Which binds per-worker sockets can serve (:mod:`gunicorn_prefork.config.reuseport`)."""

from __future__ import annotations

import pytest

from gunicorn_prefork.config.reuseport import check_reuseport_possible
from gunicorn_prefork.errors import StartupError


@pytest.mark.parametrize(("binds", "platform", "message"), [
    (["/tmp/x.sock"], "linux", "bind unix:/tmp/x.sock"),
    ([3], "linux", "bind fd://3"),
    ([("127.0.0.1", 80)], "darwin", "platform (darwin)"),
])
def test_impossible_setups(binds: list[object], platform: str, message: str) -> None:
    with pytest.raises(StartupError, match="prefork_reuseport = False") as caught:
        check_reuseport_possible(binds, platform)
    assert message in str(caught.value)


def test_possible_setup() -> None:
    check_reuseport_possible([("0.0.0.0", 80), ("::", 80)], "linux")
