"""Which Gunicorn releases the plugin is tested with, and what it says outside them.

The plugin reaches into Gunicorn's arbiter and gevent worker (every touchpoint is in
:mod:`gunicorn_prefork._gunicorn`, each with a canary test). A Gunicorn newer than
the newest tested release may have moved one: the master says so once at start-up,
naming the tested range, and runs anyway (the package requires ``gunicorn>=20.1``
without an upper bound, so that a security release installs).
"""

from __future__ import annotations

from collections.abc import Sequence

#: The oldest and the newest Gunicorn (major, minor) the test matrix runs (tox.ini).
OLDEST = (20, 1)
NEWEST = (27, 0)


def untested(version_info: Sequence[int]) -> str | None:
    """A warning for a Gunicorn outside the tested range, or None."""
    release = tuple(version_info[:2])
    if OLDEST <= release <= NEWEST:
        return None
    shown = ".".join(str(part) for part in version_info)
    side = "newer than" if release > NEWEST else "older than"
    return (f"Gunicorn {shown} is {side} the releases gunicorn-prefork is tested with "
            f"({OLDEST[0]}.{OLDEST[1]} to {NEWEST[0]}.{NEWEST[1]}): it runs, but report "
            "anything odd (the plugin hooks into Gunicorn's arbiter and gevent worker)")
