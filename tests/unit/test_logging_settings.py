"""The `logging:` section: defaults, routes and selection groups, and mistakes caught at start-up."""
from __future__ import annotations

import pytest

from asci_core.config import ConfigError, parse_config
from asci_logging.journal_source import parse_select
from asci_logging.routing import Router


def test_defaults_route_every_component_and_select_them():
    config = parse_config("")
    s = config.logging.shipper
    assert config.logging.prefix == "asci-logs"
    assert {r.component for r in s.routes if r.component} >= {"autobuild", "asci_core", "registry", "session", "proxy"}
    selected = {term for group in s.select for term in group}
    for route in s.routes:
        if route.component:
            assert f"ASCI_COMPONENT={route.component}" in selected, route


def test_routes_and_select_from_yaml():
    config = parse_config("""
logging:
  prefix: site-logs
  shipper:
    select: [[CONTAINER_NAME=a, CONTAINER_NAME=b], [SYSLOG_IDENTIFIER=x]]
    routes:
      - {pipeline: access, container_name: "-proxy$", dataset: web}
    batch_size: 500
""")
    s = config.logging.shipper
    assert s.select == [["CONTAINER_NAME=a", "CONTAINER_NAME=b"], ["SYSLOG_IDENTIFIER=x"]]
    assert s.routes[0].dataset == "web" and s.batch_size == 500
    router = Router(config.logging.prefix, s.routes, s.default_pipeline)
    assert router.decide(None, "asci-proxy", None).pipeline == "site-logs-access"
    assert router.decide(None, "asci-proxy", None).dataset == "web"
    assert router.decide(None, "other", None).pipeline == "site-logs-default"


@pytest.mark.parametrize("yaml_text,key", [
    ("logging: {shipper: {routes: [{pipeline: access, container_name: '('}]}}", "logging.shipper.routes[0].container_name"),
    ("logging: {shipper: {routes: [{component: x}]}}", "logging.shipper.routes[0].pipeline"),
    ("logging: {shipper: {batch_size: 0}}", "logging.shipper.batch_size"),
    ("logging: {prefix: Bad_Prefix}", "logging.prefix"),
    ("logging: {shipper: {start_at: middle}}", "logging.shipper.start_at"),
])
def test_mistakes_name_the_key(yaml_text, key):
    with pytest.raises(ConfigError) as err:
        parse_config(yaml_text)
    assert err.value.key == key


def test_select_terms_are_checked():
    assert parse_select([["A=1", "B="]]) == [[("A", "1"), ("B", "")]]
    for bad in ([], [[]], [["lower=1"]], [["NOEQUALS"]], [["1ABC=x"]]):
        with pytest.raises(ValueError):
            parse_select(bad)


def test_route_that_matches_nothing_is_refused():
    config = parse_config("logging: {shipper: {routes: [{pipeline: access}]}}")
    with pytest.raises(ValueError, match="matches nothing"):
        Router("p", config.logging.shipper.routes, "default")
