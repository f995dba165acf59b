"""Retention planning and version order, as pure functions (the real registry is in integration)."""
from __future__ import annotations

import datetime as _dt
import random

import pytest

from asci_core.config import ConfigError, parse_config
from registry.deployed import ConfiguredDeployments, DeployedSet
from registry.retention import TagInfo, plan_repository
from registry.semver import parse_version, sort_tags
from registry.settings import RetentionPolicy

NOW = _dt.datetime(2026, 6, 1, tzinfo=_dt.timezone.utc)
OLD = NOW - _dt.timedelta(days=400)


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def test_versions_sort_by_semver_not_by_string():
    tags = ["v1.2.9", "v1.2.10", "latest", "v1.10.0-rc.2", "v1.10.0-rc.10", "v1.10.0", "v1.2", "1.3.0-alpha",
            "1.3.0-alpha.1", "1.3.0-alpha.beta", "1.3.0-beta", "1.3.0", "main-3f2a1c"]
    random.Random(4).shuffle(tags)
    assert sort_tags(tags) == ["v1.2", "v1.2.9", "v1.2.10", "1.3.0-alpha", "1.3.0-alpha.1", "1.3.0-alpha.beta",
                               "1.3.0-beta", "1.3.0", "v1.10.0-rc.2", "v1.10.0-rc.10", "v1.10.0",
                               "latest", "main-3f2a1c"]


@pytest.mark.parametrize("tag", ["latest", "v", "1.2.3.4", "v01.2.3", "1.2.3-", "release-1.2.3", "1.2.3_x"])
def test_non_versions_are_not_versions(tag):
    assert parse_version(tag) is None


def mixed_repository() -> list[TagInfo]:
    return [
        TagInfo("v1.2.8", digest(8), OLD),
        TagInfo("v1.2.9", digest(9), OLD),
        TagInfo("build-42", digest(9), OLD),  # same image as v1.2.9
        TagInfo("v1.2.10", digest(10), OLD),
        TagInfo("latest", digest(10), OLD),
        TagInfo("v1.10.0-rc.1", digest(101), OLD),
        TagInfo("v1.10.0-rc.2", digest(102), OLD),
        TagInfo("v1.10.0-rc.10", digest(110), OLD),
        TagInfo("v1.0.0", digest(100), OLD),  # deployed
        TagInfo("v1.1.0", digest(11), OLD),
        TagInfo("nightly", digest(77), OLD),
        TagInfo("fresh", digest(78), NOW - _dt.timedelta(days=2)),
        TagInfo("undated", digest(79), None),
    ]


POLICY = RetentionPolicy(repository="facility/*", keep_last=2, keep_last_prereleases=1,
                         keep_tags=["latest", "stable-.*"], keep_days=7)


def test_plan_keeps_exactly_what_the_policy_says_with_reasons():
    deployed = DeployedSet(tags={("facility/desk", "v1.0.0"): "container desk-1"})
    plan = plan_repository("facility/desk", mixed_repository(), POLICY, deployed, NOW)
    why = {d.tag: d.why() for d in plan.decisions}
    kept = {d.tag for d in plan.kept}
    assert kept == {"v1.2.10", "v1.2.9", "build-42", "latest", "v1.10.0-rc.10", "v1.0.0", "fresh", "undated"}
    assert {d.tag for d in plan.removed} == {"v1.2.8", "v1.10.0-rc.1", "v1.10.0-rc.2", "v1.1.0", "nightly"}
    assert why["v1.2.10"] == "newest 2 releases (#1)"
    assert why["v1.2.9"] == "newest 2 releases (#2)"
    assert why["build-42"] == "shares its digest with kept tag v1.2.9"
    assert why["latest"] == "matches keep pattern 'latest'"
    assert why["v1.10.0-rc.10"] == "newest 1 pre-releases (#1)"
    assert why["v1.0.0"] == "deployed: container desk-1"
    assert why["fresh"].startswith("built 2 day(s) ago")
    assert "unknown" in why["undated"]
    assert why["v1.2.8"] == "matched no keep rule"
    assert plan.delete_digests == sorted([digest(8), digest(101), digest(102), digest(11), digest(77)])


def test_a_deployed_digest_protects_every_tag_of_it():
    deployed = DeployedSet(digests={("facility/desk", digest(8)): "container old-1"})
    plan = plan_repository("facility/desk", mixed_repository(), POLICY, deployed, NOW)
    assert "v1.2.8" in {d.tag for d in plan.kept}
    assert digest(8) not in plan.delete_digests


def test_a_digest_is_deleted_only_when_no_tag_of_it_is_kept():
    tags = [TagInfo("nightly", digest(1)), TagInfo("v2.0.0", digest(1)), TagInfo("v1.0.0", digest(2))]
    plan = plan_repository("r", tags, RetentionPolicy(repository="r", keep_last=1, keep_tags=[]), DeployedSet(), NOW)
    assert plan.delete_digests == [digest(2)]
    assert {d.tag: d.keep for d in plan.decisions} == {"nightly": True, "v2.0.0": True, "v1.0.0": False}


def test_configured_deployments_accept_tags_digests_and_the_registry_address():
    refs = ConfiguredDeployments(["facility/a:v1", "127.0.0.1:5000/facility/b@" + digest(3),
                                  "other.site:5000/facility/c:v9"], address="127.0.0.1:5000").deployed_refs()
    found = DeployedSet.gather([ConfiguredDeployments(["facility/a:v1"])])
    assert [(r.repository, r.tag, r.digest) for r in refs] == [("facility/a", "v1", None),
                                                               ("facility/b", None, digest(3))]
    assert ("facility/a", "v1") in found.tags


def test_planning_10000_tags_is_fast_enough_to_run_always():
    # Not a benchmark (see bench/registry_retention.py): just a guard against accidental quadratic work.
    rng = random.Random(1)
    tags = [TagInfo(f"v{rng.randrange(5)}.{rng.randrange(50)}.{i}", digest(i), OLD) for i in range(10000)]
    import time
    t0 = time.process_time()
    plan = plan_repository("r", tags, POLICY, DeployedSet(), NOW)
    assert len(plan.kept) == 2 and time.process_time() - t0 < 5


def test_registry_section_is_checked_at_load():
    cfg = parse_config("registry:\n  retention:\n    - {repository: 'facility/*', keep_last: 3, keep_tags: ['stable-.*']}\n"
                       "  deployed: ['facility/desk:v1.0.0']\n")
    assert cfg.registry.policy_for("facility/desk").keep_last == 3
    assert cfg.registry.policy_for("other/desk") is None
    with pytest.raises(ConfigError, match=r"registry.retention\[0\].keep_tags\[0\]: not a valid regular expression"):
        parse_config("registry:\n  retention:\n    - {repository: x, keep_tags: ['(']}\n")
    with pytest.raises(ConfigError, match=r"registry.retention\[0\].repository: required setting is missing"):
        parse_config("registry:\n  retention:\n    - {keep_last: 3}\n")
    with pytest.raises(ConfigError, match=r"registry.deployed\[0\]: 'Bad' is not a valid repository name"):
        parse_config("registry:\n  deployed: ['Bad:v1']\n")
    with pytest.raises(ConfigError, match="registry.tls: certificate and key must be given together"):
        parse_config("registry:\n  tls: {certificate: /etc/cert.pem}\n")


def test_a_running_image_is_recognised_by_its_image_id_in_any_repository():
    deployed = DeployedSet(image_ids={digest(500): "container desk-1"})
    tags = [TagInfo("v1.0.0", digest(1), OLD, config_digests=frozenset({digest(500)})),
            TagInfo("v1.1.0", digest(2), OLD, config_digests=frozenset({digest(501)})),
            TagInfo("v1.2.0", digest(500), OLD)]  # engines with the containerd store use the manifest digest
    plan = plan_repository("facility/desk", tags, RetentionPolicy(repository="facility/*", keep_last=0, keep_tags=[]),
                           deployed, NOW)
    assert {d.tag: d.keep for d in plan.decisions} == {"v1.0.0": True, "v1.1.0": False, "v1.2.0": True}
    assert plan.delete_digests == [digest(2)]
