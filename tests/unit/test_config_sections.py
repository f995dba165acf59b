"""Config is composed from the core sections and the components' registered ones."""
from __future__ import annotations

import dataclasses

import pytest

from asci_core.components import settings_sections
from asci_core.config import CORE_SECTIONS, Config, ConfigError, describe, parse_config


def test_config_has_every_core_and_component_section():
    names = [f.name for f in dataclasses.fields(Config)]
    assert names == ["source", *(n for n, _ in CORE_SECTIONS), *(n for n, _ in settings_sections())]
    config = Config()
    assert {"autobuild", "registry", "logging", "server", "stack", "log", "slack"} <= set(names)
    assert config.autobuild.concurrency == 2 and config.registry.retention == [] and config.log.level == "info"


def test_log_level_moved_but_the_old_key_loads():
    assert parse_config("log:\n  level: debug\n").log.level == "debug"
    assert parse_config("logging:\n  level: warning\n  prefix: x-logs\n").log.level == "warning"
    assert parse_config("logging:\n  level: warning\n  prefix: x-logs\n").logging.prefix == "x-logs"
    with pytest.raises(ConfigError, match="logging.level: moved to log.level, which is set too"):
        parse_config("logging:\n  level: warning\nlog:\n  level: info\n")


def test_app_wide_connection_limits_moved_to_server_but_the_old_keys_load():
    moved: list[tuple[str, str]] = []
    old = parse_config("autobuild:\n  header_timeout_seconds: 3\n  max_connections: 9\n  body_timeout_seconds: 4\n"
                       "server:\n  port: 8123\n", moved=moved)
    assert (old.server.header_timeout_seconds, old.server.max_connections, old.server.port) == (3.0, 9, 8123)
    assert old.server.idle_timeout_seconds == 15.0 and old.autobuild.body_timeout_seconds == 4.0
    assert sorted(moved) == [("autobuild.header_timeout_seconds", "server.header_timeout_seconds"),
                             ("autobuild.max_connections", "server.max_connections")]
    new = parse_config("server:\n  idle_timeout_seconds: 2\n  max_connections: 7\n")
    assert (new.server.idle_timeout_seconds, new.server.max_connections) == (2.0, 7)
    with pytest.raises(ConfigError, match="autobuild.max_connections: moved to server.max_connections, which is set "
                                          "too: keep only server.max_connections"):
        parse_config("autobuild:\n  max_connections: 9\nserver:\n  max_connections: 7\n")
    # A bad value is named by the key the file wrote.
    with pytest.raises(ConfigError, match="autobuild.idle_timeout_seconds: "):
        parse_config("autobuild:\n  idle_timeout_seconds: -1\n")
    assert "header_timeout_seconds" not in {f.name for f in dataclasses.fields(type(old.autobuild))}


def test_serve_applies_the_server_connection_limits():
    from asci_core.http_guard import LIMITS_KEY, ConnectionLimits
    from asci_core.server import build_app

    app = build_app(parse_config("server:\n  header_timeout_seconds: 2.5\n  idle_timeout_seconds: 4\n"
                                 "  max_connections: 11\n"))
    assert app[LIMITS_KEY] == ConnectionLimits(header_timeout=2.5, idle_timeout=4.0, max_connections=11)


def test_unmanaged_registry_needs_its_url():
    with pytest.raises(ConfigError) as caught:
        parse_config("stack:\n  registry:\n    managed: false\n", "f.yaml")
    assert str(caught.value) == ("f.yaml: stack.registry.url: required when stack.registry.managed is false "
                                 "(the site registry's URL)")
    ok = parse_config("stack:\n  registry:\n    managed: false\n    url: https://registry.site:5000\n")
    assert ok.stack.registry.url == "https://registry.site:5000"


def test_describe_reaches_into_lists():
    keys = {key for key, _, _ in describe()}
    assert {"autobuild.hosts[].clone_url", "autobuild.repositories[].tag_pattern", "registry.retention[].keep_days",
            "logging.shipper.routes[].identifier"} <= keys
    defaults = dict((key, default) for key, default, _ in describe())
    assert defaults["autobuild.repositories[].build_args"] == "{}"
    assert defaults["registry.retention[].keep_tags"] == "[latest]"
    assert defaults["logging.shipper.routes"].endswith("entries (see below)")
