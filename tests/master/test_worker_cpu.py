"""The scheduler's view of real processes, as the stall watch reads it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from gunicorn_prefork.master.worker_cpu import WorkerCpu
from tests.forked import in_forked_child

SPIN = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"


@pytest.fixture
def spinner() -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([sys.executable, "-c", SPIN])
    yield process
    process.kill()
    process.wait()


def test_a_running_process_is_runnable_and_its_cpu_time_grows(
        spinner: subprocess.Popen[bytes]) -> None:
    cpu = WorkerCpu()
    assert cpu.available
    first = cpu.sample((spinner.pid,))
    time.sleep(0.2)
    second = cpu.sample((spinner.pid,))
    assert first is not None and second is not None
    assert second.runnable and second.ran_ns > first.ran_ns


def test_a_stopped_or_sleeping_process_is_not_runnable(
        spinner: subprocess.Popen[bytes]) -> None:
    cpu = WorkerCpu()
    os.kill(spinner.pid, signal.SIGSTOP)
    try:
        time.sleep(0.1)
        stopped = cpu.sample((spinner.pid,))
        assert stopped is not None and not stopped.runnable
    finally:
        os.kill(spinner.pid, signal.SIGCONT)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        time.sleep(0.1)
        sample = cpu.sample((sleeper.pid,))
        assert sample is not None and not sample.runnable
        both = cpu.sample((sleeper.pid, spinner.pid))
        assert both is not None and both.runnable  # one of the slot's workers runs
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_process_that_is_gone_gives_none_and_its_files_are_closed() -> None:
    cpu = WorkerCpu()
    process = subprocess.Popen(["sleep", "30"])
    assert cpu.sample((process.pid,)) is not None
    process.kill()
    process.wait()
    assert cpu.sample((process.pid,)) is None
    assert cpu.sample(()) is None
    before = len(os.listdir("/proc/self/fd"))
    cpu.sample((os.getpid(),))
    assert len(os.listdir("/proc/self/fd")) == before + 2
    cpu.keep_only(())
    assert len(os.listdir("/proc/self/fd")) == before


def test_a_forked_child_keeps_none_of_the_masters_descriptors(
        spinner: subprocess.Popen[bytes]) -> None:
    """A worker forked by the master does not hold ``/proc`` files of its siblings."""
    cpu = WorkerCpu()
    assert cpu.sample((spinner.pid,)) is not None
    held = {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
            if os.path.exists(f"/proc/self/fd/{fd}")}
    assert f"/proc/{spinner.pid}/stat" in held
    def descriptors() -> str:  # in the child
        names = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                names.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                pass
        return "\n".join(names)

    child_holds = in_forked_child(descriptors).splitlines()
    assert not [name for name in child_holds if name.startswith(f"/proc/{spinner.pid}/")]
    assert cpu.sample((spinner.pid,)) is not None  # the master's own copies still work
