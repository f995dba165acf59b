from __future__ import annotations

import pytest

from autobuild.tags import TagRefused, Version, check_tag, highest

SEMVER = r"^v?\d+\.\d+\.\d+$"


@pytest.mark.parametrize("tag", ["v1.2.3", "1.2.3", "v10.20.30"])
def test_semantic_versions_pass_the_default_filter(tag):
    assert check_tag(tag, SEMVER) == tag


@pytest.mark.parametrize("tag,reason", [
    ("v1;rm -rf /", "not a valid Docker tag"),
    ("a b", "not a valid Docker tag"),
    ("../x", "not a valid Docker tag"),
    (".hidden", "not a valid Docker tag"),
    ("x" * 129, "129 characters long"),
    ("v1\n", "not printable ASCII"),
    ("vé1", "not printable ASCII"),
    ("", "not a valid Docker tag"),
    ("v1.2", "does not match this repository's tag filter"),
])
def test_refusals_say_why(tag, reason):
    with pytest.raises(TagRefused, match=reason):
        check_tag(tag, SEMVER)


def test_semantic_version_order_is_numeric_and_releases_beat_prereleases():
    tags = ["v1.2.9", "v1.2.10", "v1.10.0", "v1.9.9", "v2.0.0-rc.1", "v2.0.0-rc.10", "v2.0.0-beta"]
    ordered = sorted(tags, key=Version.parse)
    assert ordered == ["v1.2.9", "v1.2.10", "v1.9.9", "v1.10.0", "v2.0.0-beta", "v2.0.0-rc.1", "v2.0.0-rc.10"]
    assert Version.parse("v2.0.0") > Version.parse("v2.0.0-rc.10")


def test_highest_ignores_prereleases_and_non_versions():
    assert highest(["v1.2.9", "v1.2.10", "v2.0.0-rc.1", "latest", "nightly"]) == "v1.2.10"
    assert highest(["latest"]) is None
