"""Zero lost connections across the worker lifecycle, under load (issue: lifecycle).

Each test runs a bounded load from tests/load.py against a real server while the
event happens, then asserts that no client saw a refusal, a reset or a missing
response. For SIGKILL only what the killed worker had already accepted may die.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.load import Load
from tests.server import free_port, listeners, request, running, spread, wait_children, wait_for

PREFORK = 'worker_class = "gunicorn_prefork.Worker"\n'
MODES = [pytest.param(False, id="close"), pytest.param(True, id="keepalive")]


def _config(port: int, workers: int = 3, extra: str = "") -> str:
    return (PREFORK + f'bind = "127.0.0.1:{port}"\nworkers = {workers}\nloglevel = "info"\n'
            "prefork_recover_threshold = 0\n" + extra)


@pytest.mark.parametrize("keepalive", MODES)
def test_max_requests_recycling(tmp_path: Path, keepalive: bool) -> None:
    port = free_port()
    extra = "max_requests = 200\nmax_requests_jitter = 50\n"
    with running(tmp_path, config=_config(port, extra=extra)) as server:
        server.wait_serving(port, 3)
        load = Load(port, concurrency=16, keepalive=keepalive).start()
        time.sleep(6)
        result = load.stop()
    # read once the server stopped: a worker logs its boot before the master logs
    # which slot it took over
    log = server.log()
    assert log.count("Autorestarting worker") >= 3, "no recycling happened"
    assert result.lost == 0, result
    assert len(result.workers) > 3, result
    # one new worker per recycle, never more: each leaving worker gets at most one
    # successor (a worker that exits before the master saw it leave is replaced by
    # Gunicorn's own loop instead, with no "takes over" line)
    booted = re.findall(r"Booting worker with pid: (\d+)", log)[3:]
    successors = re.findall(r"worker (\d+) takes over slot \d+ from worker \d+", log)
    predecessors = re.findall(r"worker \d+ takes over slot \d+ from worker (\d+)", log)
    assert sorted(successors) == sorted(set(successors)), log
    assert sorted(predecessors) == sorted(set(predecessors)), log
    assert set(successors) <= set(booted), log
    assert len(booted) <= log.count("Autorestarting worker"), log


@pytest.mark.parametrize("keepalive", MODES)
def test_hup(tmp_path: Path, keepalive: bool) -> None:
    port = free_port()
    with running(tmp_path, config=_config(port)) as server:
        server.wait_serving(port, 3)
        load = Load(port, concurrency=16, keepalive=keepalive).start()
        for _ in range(3):
            time.sleep(1.5)
            server.signal(signal.SIGHUP)
        time.sleep(2)
        result = load.stop()
    assert result.lost == 0, result
    assert len(result.workers) >= 9, result


@pytest.mark.parametrize("keepalive", MODES)
def test_ttin_and_ttou(tmp_path: Path, keepalive: bool) -> None:
    """A retired slot is drained (steered away, queue accepted) before it closes."""
    port = free_port()
    with running(tmp_path, config=_config(port)) as server:
        server.wait_serving(port, 3)
        load = Load(port, concurrency=24, keepalive=keepalive).start()
        for sig in (signal.SIGTTOU, signal.SIGTTIN, signal.SIGTTOU, signal.SIGTTOU,
                    signal.SIGTTIN):
            time.sleep(1.2)
            server.signal(sig)
        time.sleep(1.5)
        result = load.stop()
        assert "retired slot" in server.log()
        wait_for(lambda: listeners(port) == 2, what="2 slots in the end")
    assert result.lost == 0, result


#: Every worker forks a process that keeps the worker's descriptors (as an app's
#: ``os.fork()`` or ``subprocess`` with ``close_fds=False`` does) and outlives it.
FORKS_A_HOLDER = """
import os
def post_worker_init(worker):
    if os.fork() == 0:
        from gevent import monkey
        monkey.get_original("time", "sleep")(60)
        os._exit(0)
"""


def test_ttou_stops_a_slot_another_process_still_holds(tmp_path: Path) -> None:
    """A retired slot stops listening although a process the app forked still holds
    its socket: otherwise it stays in the SO_REUSEPORT group, where nobody accepts,
    and new connections wait there (stock's one shared socket has no such place)."""
    port = free_port()
    with running(tmp_path, config=_config(port, extra=FORKS_A_HOLDER)) as server:
        server.wait_serving(port, 3)
        server.signal(signal.SIGTTOU)
        wait_for(lambda: "retired slot" in server.log(), what="a retired slot")
        wait_for(lambda: listeners(port) == 2, what="2 listening sockets")
        for _ in range(60):
            assert request("127.0.0.1", port, timeout=3)[0] == 200


@pytest.mark.parametrize("old_master_signal", [signal.SIGTERM, signal.SIGQUIT],
                         ids=["TERM", "QUIT"])
@pytest.mark.parametrize("keepalive", MODES)
def test_usr2_then_stop_the_old_master(tmp_path: Path, keepalive: bool,
                                       old_master_signal: int) -> None:
    port = free_port()
    with running(tmp_path, config=_config(port)) as server:
        server.wait_serving(port, 3)
        old_workers = server.worker_pids()
        load = Load(port, concurrency=16, keepalive=keepalive).start()
        time.sleep(1)
        new_master = server.usr2(3)
        try:
            wait_children(new_master, 3, what="new workers")
            time.sleep(1.5)
            server.signal(old_master_signal)
            assert server.wait_exit(15) == 0
            time.sleep(1.5)
            result = load.stop()
            assert listeners(port) == 3
        finally:
            os.kill(new_master, signal.SIGTERM)
            wait_for(lambda: listeners(port) == 0, what="new master stopped")
    assert result.lost == 0, result
    assert not set(result.workers) <= {str(pid) for pid in old_workers}, result


def test_ttou_to_the_old_master_in_a_usr2_overlap_leaves_the_new_ones_slots(
        tmp_path: Path) -> None:
    """The old master retires a slot the new master still serves: only its own copy
    closes (a retired slot otherwise stops listening everywhere)."""
    port = free_port()
    with running(tmp_path, config=_config(port)) as server:
        server.wait_serving(port, 3)
        new_master = server.usr2(3)
        try:
            wait_children(new_master, 3, what="new workers")
            load = Load(port, concurrency=8).start()
            server.signal(signal.SIGTTOU)
            wait_for(lambda: "retired slot" in server.log(), what="the old master retires")
            time.sleep(1)
            result = load.stop()
            assert listeners(port) == 3
            assert sum(spread("127.0.0.1", port, 60).values()) == 60
        finally:
            os.kill(new_master, signal.SIGTERM)
            wait_for(lambda: new_master not in server.worker_pids(), what="new master gone")
    assert result.lost == 0, result


def test_queued_connections_survive_a_killed_worker(tmp_path: Path) -> None:
    """Connections queued on a dead worker's socket are served by its replacement.

    The worker is stopped (SIGSTOP) so connections pile up in its slot's queue, then
    killed: the master still holds the socket, the next worker on the slot accepts.
    """
    port = free_port()
    with running(tmp_path, config=_config(port)) as server:
        server.wait_serving(port, 3)
        victim = min(server.worker_pids())
        os.kill(victim, signal.SIGSTOP)
        clients = []
        for _ in range(60):
            client = socket.create_connection(("127.0.0.1", port), timeout=15)
            client.sendall(b"GET / HTTP/1.0\r\nHost: test\r\n\r\n")
            clients.append(client)
        time.sleep(0.2)
        os.kill(victim, signal.SIGKILL)
        answered = 0
        for client in clients:
            with client:
                try:
                    data = client.recv(65536)
                except OSError:
                    data = b""
                answered += data.startswith(b"HTTP/1.1 200") or data.startswith(b"HTTP/1.0 200")
    assert answered == 60


def test_sigkill_under_load_loses_only_what_the_worker_held(tmp_path: Path) -> None:
    port = free_port()
    concurrency = 16
    with running(tmp_path, config=_config(port)) as server:
        server.wait_serving(port, 3)
        load = Load(port, concurrency=concurrency, keepalive=False).start()
        time.sleep(1.5)
        os.kill(min(server.worker_pids()), signal.SIGKILL)
        time.sleep(2.5)
        result = load.stop()
    assert result.counts["refused"] == 0, result
    assert result.lost <= concurrency, result  # at most the requests it had in hand


def test_no_slow_lane_while_a_slot_has_no_worker(tmp_path: Path) -> None:
    """While a crashed worker's replacement waits (back-off), new connections go to
    the live slots: none waits for the missing worker."""
    port = free_port()
    with running(tmp_path, config=_config(port, extra="prefork_recover_interval = 6\n")
                 ) as server:
        server.wait_serving(port, 3)
        os.kill(min(server.worker_pids()), signal.SIGKILL)
        wait_for(lambda: "waits 6.0s before booting" in server.log(), what="back-off")
        served = [request("127.0.0.1", port, timeout=4)[0] for _ in range(150)]
    assert served == [200] * 150


def test_term_completes_requests_in_flight(tmp_path: Path) -> None:
    import concurrent.futures

    port = free_port()
    with running(tmp_path, config=_config(port)) as server:
        server.wait_serving(port, 3)
        with concurrent.futures.ThreadPoolExecutor(9) as pool:
            slow = [pool.submit(request, "127.0.0.1", port, "/sleep", 10) for _ in range(9)]
            time.sleep(0.3)
            server.signal(signal.SIGTERM)
            statuses = [future.result()[0] for future in slow]
        assert server.wait_exit(15) == 0
    assert statuses == [200] * 9
