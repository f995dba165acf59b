"""Which tag a following service takes next, and what the `services` section refuses."""
from __future__ import annotations

import pytest

from asci_core.config import ConfigError, parse_config
from asci_core.services.policy import allowed, first_allowed, first_tag, next_tag

TAGS = ["v1.0.0", "v1.0.1", "v1.0.2", "v1.1.0", "v1.2.0-rc.1", "v2.0.0", "latest", "main-3f2a1c"]


@pytest.mark.parametrize("follow, expected", [("pinned", None), ("patch", "v1.0.2"), ("minor", "v1.1.0"),
                                              ("major", "v2.0.0")])
def test_next_tag_follows_the_policy_in_version_order(follow, expected):
    assert next_tag(follow, "v1.0.0", TAGS, bad=set()) == expected


def test_bad_tags_are_never_taken_and_nothing_rolls_backwards():
    assert next_tag("patch", "v1.0.0", TAGS, bad={"v1.0.2"}) == "v1.0.1"
    assert next_tag("minor", "v1.1.0", ["v1.0.9", "v1.0.0"], bad=set()) is None
    assert not allowed("major", "v2.0.0", "v1.9.9")
    assert not allowed("minor", "v1.0.0", "v1.2.0-rc.1")
    assert not allowed("minor", "v1.0.0", "v2.0.0")


def test_a_service_never_deployed_starts_at_its_configured_tag_or_newer_within_its_policy():
    assert first_allowed("pinned", "v1.0.1", "v1.0.1") and not first_allowed("pinned", "v1.0.1", "v1.0.2")
    assert first_allowed("minor", "v1.0.1", "v1.1.0") and not first_allowed("minor", "v1.0.1", "v1.0.0")
    assert not first_allowed("minor", "v1.0.1", "v2.0.0")
    assert first_tag("pinned", "v1.0.1", TAGS, bad=set()) == "v1.0.1"
    assert first_tag("pinned", "v9.0.0", TAGS, bad=set()) is None
    assert first_tag("patch", "v1.0.1", TAGS, bad={"v1.0.2"}) == "v1.0.1"
    assert first_tag("minor", "v1.0.1", TAGS, bad=set()) == "v1.1.0"


def _services(body: str):
    return parse_config("services:\n  definitions:\n" + body).services


def test_a_service_loads_with_its_secrets_hidden():
    svc = _services("""
    - name: web
      repository: asci/web
      tag: v1.0.0
      follow: minor
      ports: [{container: 8080, host: 18080}]
      secrets: [{name: token, value: s3cret}]
      health: {http_path: /healthz, wait: 10}
""").definitions[0]
    assert svc.follow == "minor" and svc.ports[0].host == 18080 and svc.health.wait == 10
    assert "s3cret" not in repr(svc)


@pytest.mark.parametrize("body, key", [
    ("    - {name: Web, repository: asci/web, tag: v1}\n", "services.definitions[0].name"),
    ("    - {name: web, repository: asci/web, tag: latest, follow: minor}\n", "services.definitions[0].tag"),
    ("    - {name: web, repository: asci/web, tag: v1, health: {http_path: /h}}\n", "services.definitions[0].health.port"),
    ("    - {name: web, repository: asci/web, tag: v1, replace: sometimes}\n", "services.definitions[0].replace"),
    ("    - {name: web, repository: asci/web, tag: v1}\n    - {name: web, repository: asci/x, tag: v1}\n",
     "services.definitions[1].name"),
])
def test_mistakes_are_refused_with_the_key(body, key):
    with pytest.raises(ConfigError) as err:
        _services(body)
    assert err.value.key == key
