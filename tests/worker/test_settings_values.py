from __future__ import annotations

from typing import Any

from gunicorn.config import Config

from gunicorn_prefork.worker import settings_values


def _counting(cfg: Config) -> list[str]:
    """The names for which ``Setting.get()`` runs from now on."""
    reads: list[str] = []
    for name, setting in cfg.settings.items():
        original = setting.get

        def get(name: str = name, original: Any = original) -> Any:
            reads.append(name)
            return original()

        setting.get = get
    return reads


def test_each_setting_is_read_once_and_is_the_same_value() -> None:
    cfg = Config()
    cfg.set("forwarded_allow_ips", "10.0.0.1")
    allowed = cfg.forwarded_allow_ips
    settings_values.install(cfg)
    reads = _counting(cfg)
    for _ in range(3):
        assert cfg.keepalive == 2
        assert cfg.forwarded_allow_ips is allowed
        assert cfg.pre_request is cfg.settings["pre_request"].value
    assert sorted(reads) == ["forwarded_allow_ips", "keepalive", "pre_request"]
    assert isinstance(cfg, Config) and type(cfg).__name__ == "Config"


def test_set_changes_a_kept_value() -> None:
    cfg = Config()
    settings_values.install(cfg)
    assert cfg.keepalive == 2
    cfg.set("keepalive", 9)
    assert cfg.keepalive == 9


def test_properties_and_unknown_names_behave_as_before() -> None:
    cfg = Config()
    settings_values.install(cfg)
    settings_values.install(cfg)  # twice: no second layer
    assert type(cfg).__mro__[1] is Config
    assert not cfg.is_ssl
    cfg.set("certfile", "/x.pem")
    assert cfg.is_ssl
    try:
        cfg.no_such_setting  # noqa: B018
    except AttributeError as error:
        assert "no_such_setting" in str(error)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
