"""Unit tests of exit classification and crash counting (pure logic)."""

from __future__ import annotations

import signal

import pytest

from gunicorn_prefork.errors import EXIT_OVER_RECOVERY
from gunicorn_prefork.master.recovery import (
    Crash,
    CrashCounter,
    ExitKind,
    classify,
    describe_status,
)


def exited(code: int) -> int:
    return code << 8


def killed(sig: int) -> int:
    return int(sig)


@pytest.mark.parametrize(("status", "asked", "aborted", "booted", "kind"), [
    (exited(0), False, False, True, ExitKind.CLEAN),      # max_requests
    (exited(0), True, False, True, ExitKind.ASKED),       # TERM/QUIT from the master
    (killed(signal.SIGKILL), True, False, True, ExitKind.ASKED),  # stop's final KILL
    (exited(1), False, False, True, ExitKind.CRASH),
    (killed(signal.SIGKILL), False, False, True, ExitKind.CRASH),  # OOM killer, kill -9
    (killed(signal.SIGSEGV), False, False, True, ExitKind.CRASH),
    (exited(0), False, False, False, ExitKind.CRASH),      # never booted
    (exited(0), True, True, True, ExitKind.TIMEOUT),       # SIGABRT for a timeout
])
def test_classify(status: int, asked: bool, aborted: bool, booted: bool, kind: ExitKind) -> None:
    assert classify(status, asked=asked, aborted=aborted, booted=booted) is kind


def test_describe_status() -> None:
    assert describe_status(exited(1)) == "exited with code 1"
    assert describe_status(killed(signal.SIGKILL)) == "killed by SIGKILL"


def test_threshold_within_window() -> None:
    counter = CrashCounter(threshold=2, window=10)
    for at in (0.0, 1.0):
        counter.record(Crash(at, 1, "x"))
    assert not counter.over(2.0)
    counter.record(Crash(3.0, 2, "y"))
    assert counter.over(3.0)
    assert not counter.over(10.5)  # the first crash left the window


def test_window_zero_is_the_whole_life() -> None:
    counter = CrashCounter(threshold=1, window=0)
    counter.record(Crash(0.0, 1, "x"))
    counter.record(Crash(1e6, 2, "y"))
    assert counter.over(1e6)
    message = counter.halt_message(1e6)
    assert "2 worker crashes since the master started" in message
    assert f"exit status {EXIT_OVER_RECOVERY}" in message


def test_threshold_zero_never_halts() -> None:
    counter = CrashCounter(threshold=0, window=0)
    for at in range(100):
        counter.record(Crash(float(at), at, "x"))
    assert not counter.over(100.0)


def test_exit_status_is_not_gunicorns() -> None:
    assert EXIT_OVER_RECOVERY not in (0, 1, 3, 4)


def test_recovery_halts_once_and_hands_out_each_replacement_once() -> None:
    from gunicorn_prefork.master.recovery import Recovery

    recovery = Recovery(threshold=1, window=60)
    slot_a, slot_b = object(), object()
    assert recovery.record(Crash(10.0, 1, "killed"), slot_a, "w1", interval=5) == 1
    assert not recovery.take_halt()
    assert recovery.record(Crash(11.0, 2, "killed"), slot_b, "w2", interval=5) == 2
    assert recovery.take_halt() and not recovery.take_halt()
    replacement = recovery.take_replacement(slot_b, [slot_a, slot_b])
    assert replacement is not None and replacement.not_before == 16.0
    assert recovery.take_replacement(slot_b, [slot_a, slot_b]) is None
    assert recovery.take_replacement(slot_a, [slot_b]) is None  # slot retired: dropped
