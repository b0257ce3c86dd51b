"""Unit tests of the misspelt-name suggestions (pure logic)."""

from __future__ import annotations

from gunicorn_prefork.config import settings, suggest

NAMES = [spec.name for spec in settings.SPECS]


def test_closest_real_setting() -> None:
    def closest(name: str) -> str | None:
        return suggest.closest(name, NAMES, "prefork_")

    assert closest("prefork_recover_threshoId") == "prefork_recover_threshold"
    assert closest("prefork_reuse_port") == "prefork_reuseport"
    assert closest("prefork_on_readdy") == "prefork_on_ready"
    assert closest("prefork_stall") is None
    assert closest("prefork_x") is None


def test_unknown_names_only_with_the_prefix_and_not_known() -> None:
    found = suggest.unknown(
        ["prefork_reuseport", "prefork_recover_windwo", "workers", "bind", "prefork_x"],
        "prefork_", NAMES, "in the configuration file")
    assert [(u.name, u.suggestion) for u in found] == [
        ("prefork_recover_windwo", "prefork_recover_window"), ("prefork_x", None)]


def test_message_names_name_place_and_suggestion() -> None:
    message = suggest.UnknownName("GUNICORN_PREFORK_REUSEPOR", "in the environment",
                                  "GUNICORN_PREFORK_REUSEPORT").message()
    assert message == ("GUNICORN_PREFORK_REUSEPOR in the environment is not a "
                       "gunicorn-prefork setting, ignored; did you mean "
                       "GUNICORN_PREFORK_REUSEPORT?")
    assert "did you mean" not in suggest.UnknownName("prefork_x", "here", None).message()
