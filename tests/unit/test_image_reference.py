"""The one image-reference parser, and the callers that used to have their own."""
from __future__ import annotations

import pytest

from asci_core.image_reference import ImageReference, name_and_tag, split_image_reference
from autobuild.inheritance import split_reference
from registry.errors import InvalidReference
from registry.reference import parse_reference

DIGEST = "sha256:" + "a" * 64

SPLITS = [
    ("debian:bookworm", ImageReference(None, "debian", "bookworm", None)),
    ("debian", ImageReference(None, "debian", None, None)),
    ("asci/tiny:latest", ImageReference(None, "asci/tiny", "latest", None)),
    ("registry:5000/bl/base:v1", ImageReference("registry:5000", "bl/base", "v1", None)),
    ("registry:5000/bl/base", ImageReference("registry:5000", "bl/base", None, None)),
    ("127.0.0.1:5000/x", ImageReference("127.0.0.1:5000", "x", None, None)),
    ("localhost/x:1", ImageReference("localhost", "x", "1", None)),
    ("registry.site/x", ImageReference("registry.site", "x", None, None)),
    (f"bl/base@{DIGEST}", ImageReference(None, "bl/base", None, DIGEST)),
    (f"host:5000/bl/base:v2@{DIGEST}", ImageReference("host:5000", "bl/base", "v2", DIGEST)),
    ("bl/base/deeper:v1", ImageReference(None, "bl/base/deeper", "v1", None)),  # "bl" has no . or : : not a host
]


@pytest.mark.parametrize("text,expected", SPLITS, ids=[t for t, _ in SPLITS])
def test_split(text, expected):
    assert split_image_reference(text) == expected


def test_name_and_tag():
    assert name_and_tag("registry:5000/bl/base:v1") == ("registry:5000/bl/base", "v1")
    assert name_and_tag("registry:5000/bl/base") == ("registry:5000/bl/base", "latest")
    assert name_and_tag(f"bl/base@{DIGEST}") == ("bl/base", "latest")
    assert name_and_tag("debian", default_tag="bookworm") == ("debian", "bookworm")


def test_the_callers_agree():
    for text, _ in SPLITS:
        assert split_reference(text) == name_and_tag(text)


def test_strict_parse_validates_the_same_parts():
    ref = parse_reference(f"127.0.0.1:5000/bl/base:v2@{DIGEST}", address="127.0.0.1:5000")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("127.0.0.1:5000", "bl/base", "v2", DIGEST)
    assert parse_reference("bl/base").tag == "latest"
    assert parse_reference("bl/base", default_tag=None).tag is None
    for bad, why in (("Bad/Name:v1", "not a valid repository name"), ("x:-v1", "not a valid tag"),
                     ("x@sha256:00", "not a valid digest"), ("  ", "empty image reference"),
                     ("other:5000/x:v1", "names registry other:5000")):
        with pytest.raises(InvalidReference, match=why):
            parse_reference(bad, address="127.0.0.1:5000")
