"""The master's fork hygiene in one place (:mod:`gunicorn_prefork.master.at_fork`):
a registered object is paused before a fork and closes its part in the child."""

from __future__ import annotations

import os

from gunicorn_prefork.master import at_fork
from tests.forked import in_forked_child


class Resource:
    def __init__(self) -> None:
        self.read, self.write = os.pipe()
        self.paused = 0
        at_fork.register(self)

    def pause_for_fork(self) -> None:
        self.paused += 1

    def close_in_child(self) -> None:
        os.close(self.read)


def test_a_child_closes_what_it_must_not_hold() -> None:
    resource = Resource()
    try:
        def child() -> str:
            try:
                os.fstat(resource.read)
            except OSError:
                return "closed"
            return "open"

        assert in_forked_child(child) == "closed"
        assert resource.paused == 1
        os.fstat(resource.read)  # the master's own copy stays open
    finally:
        os.close(resource.read)
        os.close(resource.write)


def test_a_dropped_object_is_not_kept_for_its_hook() -> None:
    before = len(at_fork._members)
    resource = Resource()
    os.close(resource.read)
    os.close(resource.write)
    del resource
    assert len(at_fork._members) == before
