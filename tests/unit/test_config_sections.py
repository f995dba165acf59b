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
