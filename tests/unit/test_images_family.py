"""The image family's order and input hashes, from Dockerfiles on disk (no engine needed)."""
from __future__ import annotations

from pathlib import Path

import pytest

from autobuild.errors import BuildError
from autobuild.images import Family, content_tag, default_images_dir, inputs_hash
from registry.service import RegistryAccess

ACCESS = RegistryAccess("http://127.0.0.1:5000", "127.0.0.1:5000", None, None)
CHILD = "ARG REGISTRY=127.0.0.1:5000\nARG BASE_TAG=latest\nFROM ${REGISTRY}/bl/%s:${BASE_TAG}\nCOPY x /x\n"


def folder(root: Path, name: str, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    (root / name).mkdir()
    (root / name / "Dockerfile").write_text(dockerfile)
    for rel, text in (files or {}).items():
        (root / name / rel).write_text(text)
    return root / name


def test_parents_come_first_and_unknown_names_are_refused(tmp_path):
    folder(tmp_path, "base", "ARG BASE_IMAGE=debian:bookworm\nFROM ${BASE_IMAGE}\n")
    folder(tmp_path, "mid", CHILD % "base")
    folder(tmp_path, "leaf", CHILD % "mid")
    folder(tmp_path, "other", "FROM debian:bookworm\n")
    family = Family(tmp_path, ACCESS, "debian:bookworm")
    assert family.order(["leaf"]) == ["base", "mid", "leaf"]
    assert family.order() == ["base", "other", "mid", "leaf"]
    assert family.depth("leaf") == 2
    assert family.specs["base"].external_bases == ["debian:bookworm"]
    # Only the ARGs a Dockerfile declares are passed to it.
    assert family.build_args(family.specs["base"], "t") == {"BASE_IMAGE": "debian:bookworm"}
    assert family.build_args(family.specs["mid"], "t") == {"REGISTRY": "127.0.0.1:5000", "BASE_TAG": "t"}
    with pytest.raises(BuildError, match="no image folder named nope"):
        family.order(["nope"])


def test_a_cycle_is_reported(tmp_path):
    folder(tmp_path, "a", CHILD % "b")
    folder(tmp_path, "b", CHILD % "a")
    with pytest.raises(BuildError, match="cycle"):
        Family(tmp_path, ACCESS, "debian:bookworm").order()


def test_inputs_change_with_files_modes_parents_and_arguments_only(tmp_path):
    path = folder(tmp_path, "img", "FROM debian:bookworm\nCOPY run.sh /run.sh\n", {"run.sh": "echo hi\n"})
    spec = Family(tmp_path, ACCESS, "debian:bookworm").specs["img"]
    first = inputs_hash(spec, ["sha256:p1"], {"A": "1"})
    assert inputs_hash(spec, ["sha256:p1"], {"A": "1"}) == first
    assert inputs_hash(spec, ["sha256:p2"], {"A": "1"}) != first
    assert inputs_hash(spec, ["sha256:p1"], {"A": "2"}) != first
    (path / "run.sh").chmod(0o755)
    moded = inputs_hash(spec, ["sha256:p1"], {"A": "1"})
    assert moded != first
    (path / "run.sh").write_text("echo bye\n")
    assert inputs_hash(spec, ["sha256:p1"], {"A": "1"}) not in (first, moded)
    assert content_tag(first) == f"inputs-{first[:40]}"


def test_the_repository_family_maps_folders_to_registry_repositories():
    family = Family(default_images_dir(), ACCESS, "debian:bookworm")
    assert {n: s.repository for n, s in family.specs.items()} == {
        "desktop-base": "bl/desktop-base", "imaging": "bl/imaging", "xfm": "bl/xfm", "mx": "bl/mx",
        "asci": "asci/platform"}
    assert family.order()[0] in ("asci", "desktop-base")
    assert family.order(["xfm"]) == ["desktop-base", "xfm"]
