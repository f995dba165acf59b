from __future__ import annotations

import pytest

from autobuild.tags import TagRefused, check_tag
from registry.semver import highest_release

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


def test_highest_release_ignores_prereleases_and_non_versions():
    assert highest_release(["v1.2.9", "v1.2.10", "v2.0.0-rc.1", "latest", "nightly"]) == "v1.2.10"
    assert highest_release(["latest"]) is None
