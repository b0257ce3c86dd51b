"""The status endpoint (issue 30), as a load balancer and Prometheus see it.

A real master with ``prefork_status_bind``: ``/metrics`` parsed by
``prometheus_client`` (a sample per slot, counters that move after a stall);
``/ready`` turning 503 within a second of every worker stopped (SIGSTOP) or stuck in
CPU-bound code, and 200 again within a second after; 503 before the application's
listeners close on TERM; the status port under a slowloris crowd while the master
still enforces ``timeout`` and the stall watch still sees stalls; start-up errors.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server import Gunicorn, free_port, request, running, wait_for

PREFORK = 'worker_class = "gunicorn_prefork.Worker"\n'


def _config(port: int, status: int, workers: int = 2, extra: str = "") -> str:
    return (PREFORK + f'bind = "127.0.0.1:{port}"\nworkers = {workers}\n'
            f'prefork_status_bind = "127.0.0.1:{status}"\n'
            "prefork_recover_threshold = 0\nloglevel = 'info'\n" + extra)


def _get(status: int, path: str, timeout: float = 3.0) -> tuple[int, str]:
    code, _, body = request("127.0.0.1", status, path, timeout=timeout)
    return code, body.decode()


def _metrics(status: int) -> dict[tuple[str, str | None], float]:
    code, body = _get(status, "/metrics")
    assert code == 200
    return {(sample.name, sample.labels.get("slot")): sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples}


def _until_ready(status: int, ready: bool, within: float) -> float:
    """Seconds until ``/ready`` says ``ready``; fails past ``within``."""
    started = time.monotonic()
    wait_for(lambda: (_get(status, "/ready")[0] == 200) == ready, timeout=within,
             interval=0.02, what=f"/ready {'200' if ready else '503'}")
    return time.monotonic() - started


def _send(port: int, path: str, count: int, timeout: float = 10.0) -> None:
    """``count`` requests at once in the background (they may wait for a worker)."""
    def one(_: int) -> None:
        try:
            request("127.0.0.1", port, path, timeout=timeout)
        except OSError:
            pass
    pool = concurrent.futures.ThreadPoolExecutor(count)
    for index in range(count):
        pool.submit(one, index)
    pool.shutdown(wait=False)


def test_metrics_parse_and_count_a_stall(tmp_path: Path) -> None:
    port, status = free_port(), free_port()
    with running(tmp_path, config=_config(port, status, workers=3)) as server:
        server.wait_serving(port, 3)
        _until_ready(status, True, within=5.0)
        samples = _metrics(status)
        for family in ("slot_queued", "slot_held", "slot_accepted_total", "slot_stalled"):
            assert sorted(slot for name, slot in samples
                          if name == f"gunicorn_prefork_{family}") == ["0", "1", "2"]
        assert samples[("gunicorn_prefork_workers", None)] == 3
        assert samples[("gunicorn_prefork_ready", None)] == 1
        assert samples[("gunicorn_prefork_stalls_total", None)] == 0
        assert sum(value for (name, _), value in samples.items()
                   if name == "gunicorn_prefork_slot_accepted_total") >= 30
        stopped = sorted(server.worker_pids())[0]
        os.kill(stopped, signal.SIGSTOP)
        try:
            for _ in range(20):  # some land on the stopped worker's slot
                request("127.0.0.1", port, timeout=10)
            wait_for(lambda: _metrics(status)[("gunicorn_prefork_stalls_total", None)] >= 1,
                     timeout=5, what="a stall counted")
        finally:
            os.kill(stopped, signal.SIGCONT)
        assert _metrics(status)[("gunicorn_prefork_moved_total", None)] >= 1


@pytest.mark.parametrize("how", ["sigstop", "spin"])
def test_ready_flips_within_a_second_both_ways(tmp_path: Path, how: str) -> None:
    port, status = free_port(), free_port()
    with running(tmp_path, config=_config(port, status)) as server:
        server.wait_serving(port, 2)
        _until_ready(status, True, within=5.0)  # the master's next look saw them boot
        workers = sorted(server.worker_pids())
        spin = 3.0
        started = time.monotonic()
        if how == "sigstop":
            for pid in workers:
                os.kill(pid, signal.SIGSTOP)
        else:  # one each: the second, queued on the spinning worker, is moved to the
            for _ in range(2):  # other (sent at once, one worker could take both)
                _send(port, f"/spin?{spin}", 1)
                time.sleep(0.3)
        _send(port, "/", 8)  # traffic, as a balancer's would be
        try:
            _until_ready(status, False, within=1.0)
            assert _get(status, "/live") == (200, "live: Gunicorn's loop turns\n")
            code, body = _get(status, "/ready")
            assert code == 503 and body.startswith("not ready: no worker takes connections")
        finally:
            if how == "sigstop":
                for pid in workers:
                    os.kill(pid, signal.SIGCONT)
        # ready again within a second of the workers running (or of the spins' end)
        ends = time.monotonic() if how == "sigstop" else started + spin
        _until_ready(status, True, within=ends - time.monotonic() + 1.0)


def test_ready_says_503_before_the_listeners_close(tmp_path: Path) -> None:
    port, status = free_port(), free_port()
    with running(tmp_path, config=_config(port, status)) as server:
        server.wait_serving(port, 2)
        _send(port, "/sleep?2", 2)  # the stop waits for them
        seen: list[tuple[bool, int]] = []
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    listening = True
                except OSError:
                    listening = False
                try:
                    code = _get(status, "/ready", timeout=1)[0]
                except OSError:
                    code = 0
                seen.append((listening, code))

        watcher = threading.Thread(target=watch)
        watcher.start()
        time.sleep(0.5)
        server.signal(signal.SIGTERM)
        try:
            assert server.wait_exit(15) == 0
        finally:
            done.set()
            watcher.join()
    assert (True, 200) in seen and (False, 503) in seen  # it was seen both ways
    # once the application's listeners are closed, /ready never says 200 again
    assert not [entry for entry in seen if entry == (False, 200)], seen


def test_a_slowloris_crowd_does_not_stop_the_master(tmp_path: Path) -> None:
    port, status = free_port(), free_port()
    config = _config(port, status, extra="timeout = 3\n")
    with running(tmp_path, config=config) as server:
        server.wait_serving(port, 2)
        crowd = [socket.create_connection(("127.0.0.1", status)) for _ in range(100)]
        slow = socket.create_connection(("127.0.0.1", status))
        stop = threading.Event()

        def drip() -> None:
            while not stop.wait(1.0):
                try:
                    slow.sendall(b"G")
                except OSError:
                    return

        dripper = threading.Thread(target=drip)
        dripper.start()
        try:
            stuck = sorted(server.worker_pids())[0]
            os.kill(stuck, signal.SIGSTOP)  # Gunicorn's timeout must still kill it
            for _ in range(10):
                request("127.0.0.1", port, timeout=10)
            wait_for(lambda: f"WORKER TIMEOUT (pid:{stuck})" in server.log(), timeout=15,
                     what="Gunicorn's timeout")
            assert re.search(r"stall\(s\) of slots seen|takes no connections",
                             server.log()) or _metrics(status)[
                ("gunicorn_prefork_stalls_total", None)] >= 1
            assert _get(status, "/ready")[0] == 200
        finally:
            stop.set()
            dripper.join()
            for conn in [*crowd, slow]:
                conn.close()


@pytest.mark.parametrize(("setting", "says"), [
    ("{app}", "the application listens on 127.0.0.1:{port}"),
    ("{used}", "cannot listen there: the port is in use"),
    ("nonsense", "expected HOST:PORT"),
])
def test_start_up_errors_exit_1(tmp_path: Path, setting: str, says: str) -> None:
    port = free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        used = other.getsockname()[1]
        value = setting.format(app=f"127.0.0.1:{port}", used=f"127.0.0.1:{used}")
        config = (PREFORK + f'bind = "127.0.0.1:{port}"\nworkers = 1\n'
                  f'prefork_status_bind = "{value}"\n')
        result = Gunicorn(tmp_path, config=config).run_to_end(timeout=30)
    assert result.returncode == 1, result.stderr
    assert "Error: invalid prefork_status_bind" in result.stderr or (
        "Error: prefork_status_bind" in result.stderr)
    assert says.format(port=port) in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_refuses_an_application_address(tmp_path: Path) -> None:
    port = free_port()
    config = (PREFORK + f'bind = "127.0.0.1:{port}"\n'
              f'prefork_status_bind = "127.0.0.1:{port}"\n')
    result = Gunicorn(tmp_path, config=config, args=["--check-config"]).run_to_end(timeout=30)
    assert result.returncode == 1
    assert f"the application listens on 127.0.0.1:{port}" in result.stderr


def test_a_usr2_master_shares_the_status_port(tmp_path: Path) -> None:
    port, status = free_port(), free_port()
    with running(tmp_path, config=_config(port, status)) as server:
        server.wait_serving(port, 2)
        new_master = server.usr2(2)
        for _ in range(20):  # the old master answers alone while the new one boots
            assert _get(status, "/ready")[0] == 200
        wait_for(lambda: "answering beside the old master" in server.log(), timeout=15,
                 what="the new master's status endpoint")
        for _ in range(20):  # both answer
            assert _get(status, "/ready")[0] == 200
        server.signal(signal.SIGTERM)  # the old master goes; the new one answers
        wait_for(lambda: "Shutting down: Master" in server.log(), timeout=15)
        for _ in range(20):
            assert _get(status, "/ready")[0] == 200
        os.kill(new_master, signal.SIGTERM)
        wait_for(lambda: not os.path.exists(f"/proc/{new_master}"), timeout=15)



def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_the_status_thread_waits_instead_of_spinning(
        tmp_path: Path) -> None:
    """At a low ``nofile`` limit the status port's queue holds connections the master
    cannot accept (EMFILE); the listener stays readable, and polling it again at once
    spun the master's CPU (1.99 s of 2 s). It pauses 0.1 s instead, and answers once
    descriptors are free."""
    port, status = free_port(), free_port()
    config = ("import resource\nresource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))\n"
              + _config(port, status))
    with running(tmp_path, config=config) as server:
        server.wait_serving(port, 2)
        crowd = []
        try:
            for _ in range(60):  # more than the master can hold
                crowd.append(socket.create_connection(("127.0.0.1", status), timeout=5))
            before = _cpu_seconds(server.pid)
            time.sleep(2)
            spent = _cpu_seconds(server.pid) - before
        finally:
            for conn in crowd:
                conn.close()
        assert spent < 0.5, f"the master used {spent:.2f} s of CPU in 2 s"
        _until_ready(status, True, within=10.0)
