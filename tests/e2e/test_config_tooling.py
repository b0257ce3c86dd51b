"""``--check-config``, ``--print-config``, misspelt names and the "Listening at" line,
with real ``gunicorn`` processes (the start-up hook must be installed: pip install -e)."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import pytest

from tests.server import Gunicorn, free_port, running, wait_for

PREFORK = 'worker_class = "gunicorn_prefork.Worker"\n'
BAD = {
    "file": ('prefork_reuseport = "maybe"\n', {},
             "Error: invalid prefork_reuseport = 'maybe' (from the configuration file): "
             "expected True or False (or 1/0, yes/no, on/off)"),
    "negative": ("prefork_recover_threshold = -2\n", {},
                 "Error: invalid prefork_recover_threshold = -2 (from the configuration "
                 "file): expected a whole number >= 0"),
    "env": ("", {"GUNICORN_PREFORK_RECOVER_WINDOW": "soon"},
            "Error: invalid prefork_recover_window = 'soon' (from environment variable "
            "GUNICORN_PREFORK_RECOVER_WINDOW): expected a number of seconds >= 0"),
}


def _prefork_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "prefork" in line]


@pytest.mark.parametrize("case", sorted(BAD))
def test_check_config_refuses_a_bad_value_as_a_start_does(tmp_path: Path, case: str) -> None:
    config, env, line = BAD[case]
    config = PREFORK + 'bind = "127.0.0.1:0"\n' + config
    checked = Gunicorn(tmp_path, config=config, env=env,
                       args=["--check-config"]).run_to_end()
    assert checked.returncode == 1, checked
    assert _prefork_lines(checked.stderr) == [line], checked.stderr
    assert "Traceback" not in checked.stderr
    started = Gunicorn(tmp_path, config=config, env=env).run_to_end()
    assert started.returncode == checked.returncode
    assert [entry[entry.index("Error: "):] for entry in started.stderr.splitlines()
            if "Error: " in entry] == [line], started.stderr


def test_check_config_accepts_good_values(tmp_path: Path) -> None:
    config = (PREFORK + 'bind = "127.0.0.1:0"\nprefork_recover_threshold = 0\n'
              'prefork_logger = "logging.root"\n')
    checked = Gunicorn(tmp_path, config=config, env={"GUNICORN_PREFORK_REUSEPORT": "off"},
                       args=["--check-config"]).run_to_end()
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


def test_other_worker_classes_are_left_alone(tmp_path: Path) -> None:
    config = 'worker_class = "sync"\nprefork_reuseport = "maybe"\nprefork_reuseprot = 1\n'
    checked = Gunicorn(tmp_path, config=config, args=["--check-config"]).run_to_end()
    assert (checked.returncode, checked.stderr) == (0, "")
    printed = Gunicorn(tmp_path, config=config, args=["--print-config"]).run_to_end()
    assert printed.returncode == 0
    assert [line for line in printed.stdout.splitlines() if line.startswith("prefork_")] == []


def test_print_config_lists_every_setting_with_its_value(tmp_path: Path) -> None:
    config = PREFORK + "workers = 3\nprefork_recover_window = 10\n"
    printed = Gunicorn(tmp_path, config=config, args=["--print-config"],
                       env={"GUNICORN_PREFORK_COUNT_TIMEOUTS": "yes"}).run_to_end()
    assert printed.returncode == 0, printed
    shown = dict(re.split(r"\s+=\s+", line, maxsplit=1)
                 for line in printed.stdout.splitlines() if line.startswith("prefork_"))
    assert shown == {
        "prefork_count_timeouts": "True",
        "prefork_load_aware": "True",
        "prefork_logger": "None",
        "prefork_on_ready": "None",
        "prefork_on_recover": "None",
        "prefork_recover_interval": "0.0",
        "prefork_recover_threshold": "6",
        "prefork_recover_window": "10.0",
        "prefork_reuseport": "True",
        "prefork_stall_threshold": "0.01",
        "prefork_status_bind": "None",
    }


MISSPELT = {
    "file": ({"config": PREFORK + "prefork_recover_threshoId = 3\n"},
             "prefork_recover_threshoId in the configuration file is not a gunicorn-prefork "
             "setting, ignored; did you mean prefork_recover_threshold?"),
    "module": ({"config_arg": "python:prefork_misspelt_conf"},
               "prefork_stall_treshold in the configuration file is not a gunicorn-prefork "
               "setting, ignored; did you mean prefork_stall_threshold?"),
    "env": ({"config": PREFORK, "env": {"GUNICORN_PREFORK_REUSE_PORT": "0"}},
            "GUNICORN_PREFORK_REUSE_PORT in the environment is not a gunicorn-prefork "
            "setting, ignored; did you mean GUNICORN_PREFORK_REUSEPORT?"),
}


@pytest.mark.parametrize("source", sorted(MISSPELT))
def test_a_misspelt_name_is_warned_of(tmp_path: Path, source: str) -> None:
    kwargs, message = MISSPELT[source]
    port = free_port()
    (tmp_path / "prefork_misspelt_conf.py").write_text(
        "control_socket_disable = True\n" + PREFORK + "prefork_stall_treshold = 1\n")
    checked = Gunicorn(tmp_path, args=["--check-config", "-b", f"127.0.0.1:{port}"],
                       **kwargs).run_to_end()
    assert checked.returncode == 0, checked
    assert _prefork_lines(checked.stderr) == [f"Warning: prefork: {message}"]
    with running(tmp_path, args=["-b", f"127.0.0.1:{port}"], **kwargs) as server:
        wait_for(lambda: "Booting worker" in server.log(), what="a worker")
        warned = [line for line in server.log().splitlines() if message in line]
        assert len(warned) == 1, server.log()
        assert f"[WARNING] prefork: {message}" in warned[0]


def test_listening_at_names_each_address_once(tmp_path: Path) -> None:
    ports = free_port(), free_port()
    binds = [f"http://127.0.0.1:{port}" for port in ports]
    config = PREFORK + f"workers = 3\nbind = {[f'127.0.0.1:{port}' for port in ports]!r}\n"
    with running(tmp_path, config=config) as server:
        for port in ports:
            server.wait_serving(port, 3)
        lines = [line for line in server.log().splitlines() if "Listening at: " in line]
        assert len(lines) == 1, server.log()
        assert lines[0].endswith(f"Listening at: {','.join(binds)} ({server.pid})")
        # A HUP logs the line again when the binds changed.
        moved = free_port()
        server.config_path.write_text(server.config_path.read_text().replace(
            str(ports[1]), str(moved)))
        server.signal(signal.SIGHUP)
        wait_for(lambda: server.log().count("Listening at: ") == 2, what="the HUP's line")
        lines = [line for line in server.log().splitlines() if "Listening at: " in line]
        expected = f"Listening at: {binds[0]},http://127.0.0.1:{moved}"
        assert lines[1].endswith(expected), server.log()
