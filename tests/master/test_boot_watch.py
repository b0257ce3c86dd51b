"""BootWatch: a worker has booted once its heartbeat moved after its fork."""

from __future__ import annotations

import time

from gunicorn_prefork.master.boot_watch import BootWatch


class Worker:
    class tmp:
        at = 1.0

        @classmethod
        def last_update(cls) -> float:
            return cls.at


def test_booted_after_the_first_heartbeat_until_forgotten() -> None:
    watch, worker = BootWatch(), Worker()
    worker.tmp.at = 1.0
    watch.note_spawned(7, worker)
    assert not watch.update(7, worker)
    worker.tmp.at = 2.0
    assert watch.update(7, worker)
    assert watch.update(7, worker)  # booted stays booted
    watch.forget(7)
    watch.note_spawned(7, worker)  # the pid again: a new worker
    assert not watch.update(7, worker)


def test_heartbeats_during_the_back_off_are_not_a_boot() -> None:
    watch, worker = BootWatch(), Worker()
    worker.tmp.at = 1.0
    watch.note_spawned(8, worker, boot_after=time.monotonic() + 60)
    worker.tmp.at = 2.0
    assert not watch.update(8, worker)
