"""prefork_* settings from a config file, a python: module and the environment."""

from __future__ import annotations

from pathlib import Path

from tests.server import free_port, listeners, running, spread, wait_for


def _shared_mode_serves(server, port: int) -> None:
    wait_for(lambda: len(spread("127.0.0.1", port, 40)) == 2, what="two workers")
    assert listeners(port) == 1
    assert "serving Gunicorn's shared socket" in server.log()


def test_from_config_file(tmp_path: Path) -> None:
    port = free_port()
    config = (f'worker_class = "gunicorn_prefork.Worker"\nbind = "127.0.0.1:{port}"\n'
              'workers = 2\nprefork_reuseport = False\n')
    with running(tmp_path, config=config) as server:
        _shared_mode_serves(server, port)


def test_from_python_module(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "prefork_test_conf.py").write_text(
        "control_socket_disable = True\n"
        f'worker_class = "gunicorn_prefork.Worker"\nbind = "127.0.0.1:{port}"\n'
        "workers = 2\nprefork_reuseport = False\n")
    with running(tmp_path, config_arg="python:prefork_test_conf") as server:
        _shared_mode_serves(server, port)


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    port = free_port()
    config = (f'worker_class = "gunicorn_prefork.Worker"\nbind = "127.0.0.1:{port}"\n'
              'workers = 2\nprefork_reuseport = True\n')
    with running(tmp_path, config=config, env={"GUNICORN_PREFORK_REUSEPORT": "off"}) as server:
        _shared_mode_serves(server, port)
