"""HUP, TTIN, TTOU, USR2 and a killed master, with a real server."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

from tests.server import free_port, listeners, request, running, spread, wait_for

PREFORK = 'worker_class = "gunicorn_prefork.Worker"\n'


def _config(port: int, workers: int, extra: str = "") -> str:
    return PREFORK + f'bind = "127.0.0.1:{port}"\nworkers = {workers}\n' + extra


def test_hup_keeps_the_listeners_and_replaces_the_workers(tmp_path: Path) -> None:
    port = free_port()
    with running(tmp_path, config=_config(port, 3)) as server:
        server.wait_serving(port, 3)
        before = set(spread("127.0.0.1", port, 300))
        server.signal(signal.SIGHUP)
        wait_for(lambda: not before & set(spread("127.0.0.1", port, 60)) and
                 len(server.worker_pids()) == 3, what="new generation of workers")
        server.wait_serving(port, 3)
        assert listeners(port) == 3
        # settings and wiring survive the rebuilt Config: a second HUP works the same
        server.signal(signal.SIGHUP)
        time.sleep(1)
        server.wait_serving(port, 3)
        assert server.log().count("Hang up") == 2


def test_ttin_adds_a_listener(tmp_path: Path) -> None:
    port = free_port()
    with running(tmp_path, config=_config(port, 2)) as server:
        server.wait_serving(port, 2)
        server.signal(signal.SIGTTIN)
        server.wait_serving(port, 3)
        assert len(spread("127.0.0.1", port, 300)) == 3


def test_ttou_removes_a_listener_and_nothing_hangs(tmp_path: Path) -> None:
    port = free_port()
    with running(tmp_path, config=_config(port, 3)) as server:
        server.wait_serving(port, 3)
        server.signal(signal.SIGTTOU)
        wait_for(lambda: listeners(port) == 2 and len(server.worker_pids()) == 2,
                 what="2 listeners after TTOU")
        # every connection is answered: no listener is left that nobody accepts on
        counts = spread("127.0.0.1", port, 1000)
        assert sum(counts.values()) == 1000 and len(counts) == 2
        assert "retired slot" in server.log()
        server.signal(signal.SIGTTIN)
        server.wait_serving(port, 3)
        server.signal(signal.SIGTERM)
        assert server.wait_exit(20) == 0, server.log()
        assert "Traceback" not in server.log()


def test_usr2_new_master_adopts_the_slots(tmp_path: Path) -> None:
    port = free_port()
    with running(tmp_path, config=_config(port, 2)) as server:
        server.wait_serving(port, 2)
        old_workers = server.worker_pids()
        new_master = server.usr2(2)
        server.signal(signal.SIGQUIT)          # stop the old master, as the docs say
        server.wait_exit(20)
        wait_for(lambda: listeners(port) == 2, what="2 listeners of the new master")
        served = set(spread("127.0.0.1", port, 300))
        assert len(served) == 2 and not served & {str(pid) for pid in old_workers}
        import os
        os.kill(new_master, signal.SIGTERM)
        wait_for(lambda: listeners(port) == 0, what="new master gone")


def test_workers_exit_and_port_is_freed_when_master_is_killed(tmp_path: Path) -> None:
    port = free_port()
    with running(tmp_path, config=_config(port, 3)) as server:
        server.wait_serving(port, 3)
        workers = server.worker_pids()
        server.signal(signal.SIGKILL)
        server.wait_exit(5)
        started = time.monotonic()

        def gone() -> bool:
            return all(not Path(f"/proc/{pid}").exists() or
                       "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
                       for pid in workers)
        wait_for(gone, timeout=5, what="workers of the killed master to exit")
        assert time.monotonic() - started < 3
        wait_for(lambda: listeners(port) == 0, timeout=2, what="port freed")
        with socket.socket() as probe:  # a new server can take the port
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))
            probe.listen()


def test_is_child_in_worker_not_in_master(tmp_path: Path) -> None:
    port = free_port()
    config = _config(port, 1, 'def when_ready(server):\n'
                     '    import gunicorn_prefork\n'
                     '    server.log.info("master is_child=%s", gunicorn_prefork.is_child())\n')
    with running(tmp_path, config=config) as server:
        server.wait_serving(port, 1)
        assert request("127.0.0.1", port, "/is_child")[2] == b"True"
        assert "master is_child=False" in server.log()


def test_hup_with_a_new_bind_moves_the_slots(tmp_path: Path) -> None:
    first, second = free_port(), free_port()
    with running(tmp_path, config=_config(first, 2)) as server:
        server.wait_serving(first, 2)
        text = server.config_path.read_text().replace(f":{first}", f":{second}")
        server.config_path.write_text(text)
        server.signal(signal.SIGHUP)
        server.wait_serving(second, 2)
        wait_for(lambda: listeners(first) == 0, what="old bind closed")
        assert len(spread("127.0.0.1", second, 200)) == 2
        server.signal(signal.SIGTERM)
        assert server.wait_exit(20) == 0


def test_no_workers_still_queues_connections_as_stock_does(tmp_path: Path) -> None:
    """``-w 0``: the port keeps one listener, which queues connections until a
    worker comes (TTIN); they are not refused."""
    port = free_port()
    with running(tmp_path, config=_config(port, 0)) as server:
        wait_for(lambda: "Listening at" in server.log(), what="the master")
        assert listeners(port) == 1
        with socket.create_connection(("127.0.0.1", port), timeout=10) as waiting:
            waiting.sendall(b"GET / HTTP/1.0\r\n\r\n")
            server.signal(signal.SIGTTIN)
            answer = waiting.recv(100)
            assert answer.startswith(b"HTTP/1.0 200"), (answer, server.log()[-3000:])
        server.wait_serving(port, 1)
        assert listeners(port) == 1
