"""The worker's leaving logic (:class:`gunicorn_prefork.worker.slot_worker.SlotWorker`)
without a running Gunicorn: a worker made with ``object.__new__`` and the few
attributes Gunicorn's ``Worker.__init__`` would set, its heartbeat a real file.
Covered: turning ``alive`` false announces the leaving (heartbeat file size 1) only
once the worker has booted, and only once; a worker at ``max_requests`` hands its slot
over (stops accepting without taking its queue, exits on its own when done) but not
after a TERM (``handle_exit``); ``init_signals`` delivers the stop signals that came
before it (:mod:`gunicorn_prefork.fork.early_signals`), checked in a forked child.
Serving itself is the e2e tests'; the yield in ``handle_request`` is
``tests/worker/test_yield.py``'s.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from gunicorn_prefork.fork import early_signals, leaving
from gunicorn_prefork.worker import slot_worker
from gunicorn_prefork.worker.slot_worker import SlotWorker
from tests.forked import in_forked_child
from tests.master.test_coordinator import Heartbeat

MAX_REQUESTS = 10


class Calls:
    """What the worker asked of the outside: wake-ups of the master, greenlets
    spawned, stops of accepting (``take_queued`` each)."""

    def __init__(self) -> None:
        self.wakes: list[int] = []
        self.spawned: list[Any] = []
        self.stopped: list[bool] = []

    def stop_accepting(self, take_queued: bool = True) -> None:
        self.stopped.append(take_queued)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    made = Calls()
    monkeypatch.setattr(leaving, "wake_master", made.wakes.append)
    # nothing is run later in this process's hub (a handover's exit would sys.exit)
    monkeypatch.setattr(slot_worker.gevent, "spawn", made.spawned.append)
    return made


def _worker(calls: Calls | None = None, booted: bool = True, nr: int = 0) -> SlotWorker:
    """A worker as Gunicorn's ``Worker.__init__`` and ``init_process`` leave it."""
    worker: SlotWorker = object.__new__(SlotWorker)
    worker.booted = booted
    worker.nr = nr
    worker.max_requests = MAX_REQUESTS
    worker.tmp = Heartbeat()
    worker.ppid = os.getpid()
    if calls is not None:
        worker._stop_accepting = calls.stop_accepting  # type: ignore[method-assign]
    return worker


def _announced(worker: SlotWorker) -> bool:
    return leaving.announced(worker.tmp.fileno())


def test_a_worker_not_booted_yet_announces_nothing(calls: Calls) -> None:
    """Gunicorn's own alive = False before the boot (a failed boot) is no leaving."""
    worker = _worker(calls, booted=False, nr=MAX_REQUESTS)
    worker.alive = False
    assert not worker.alive
    assert not _announced(worker) and calls.wakes == []
    assert not worker._handing_over and calls.spawned == [] and calls.stopped == []


def test_a_booted_worker_announces_its_leaving_once(calls: Calls) -> None:
    worker = _worker(calls, nr=3)
    worker.alive = True  # no change: nothing said
    assert not _announced(worker)
    worker.alive = False
    assert _announced(worker) and calls.wakes == [worker.ppid]
    os.ftruncate(worker.tmp.fileno(), 0)
    worker.alive = False  # again (Gunicorn's loop, a second signal): said already
    assert not _announced(worker) and calls.wakes == [worker.ppid]
    assert not worker._handing_over  # under its limit: a stop, not a handover
    assert calls.spawned == [] and calls.stopped == []


def test_at_max_requests_it_hands_over_and_leaves_its_queue(calls: Calls) -> None:
    worker = _worker(calls, nr=MAX_REQUESTS)
    worker.alive = False  # Gunicorn's handle_request at the limit
    assert worker._handing_over
    assert calls.stopped == [False]  # no new connection; the queue left to the others
    assert calls.spawned == [worker._exit_when_done]  # exits on its own when done
    assert _announced(worker) and calls.wakes == [worker.ppid]


def test_a_term_at_the_limit_is_a_stop_not_a_handover(calls: Calls) -> None:
    worker = _worker(calls, nr=MAX_REQUESTS)
    worker.handle_exit(signal.SIGTERM, None)
    assert not worker.alive and worker._told_to_stop
    assert not worker._handing_over
    assert calls.spawned == [] and calls.stopped == []
    assert _announced(worker)  # the master still hears it leave


@pytest.mark.parametrize("signum", early_signals.STOP_SIGNALS,
                         ids=[signal.Signals(s).name for s in early_signals.STOP_SIGNALS])
def test_init_signals_delivers_a_stop_that_came_before_it(signum: int) -> None:
    def child() -> str:
        worker = _worker()  # booted: its leaving shows in the heartbeat file
        read, write = os.pipe()
        os.set_blocking(write, False)
        worker.PIPE = [read, write]
        early_signals.hold()  # right after the fork
        os.kill(os.getpid(), signum)  # the master's stop, while the worker boots
        assert worker.alive
        worker.init_signals()
        return f"alive={worker.alive} told={worker._told_to_stop} said={_announced(worker)}"

    assert in_forked_child(child) == "alive=False told=True said=True"


def test_init_signals_without_an_early_stop_leaves_the_worker_serving() -> None:
    def child() -> str:
        worker = _worker()
        read, write = os.pipe()
        os.set_blocking(write, False)
        worker.PIPE = [read, write]
        early_signals.hold()
        worker.init_signals()
        return f"alive={worker.alive} said={_announced(worker)}"

    assert in_forked_child(child) == "alive=True said=False"


def test_a_leaving_worker_no_longer_writes_its_slots_load(calls: Calls) -> None:
    """The slot's held count is its successor's once the worker hands over: the
    leaving worker's connections closing must not overwrite it."""
    from gunicorn_prefork.fork.progress import ProgressPage

    page = ProgressPage(8)
    index = page.index_for("slot")
    assert index is not None
    worker = _worker(calls, nr=MAX_REQUESTS - 1)
    worker._progress, worker._progress_index = page, index
    for _ in range(3):
        worker._took_one()
    assert page.held(index) == 3
    worker.nr = MAX_REQUESTS
    worker.alive = False  # hands over
    page.set_held(index, 5)  # its successor's load
    worker._released_one()
    worker._released_one()
    assert page.held(index) == 5
