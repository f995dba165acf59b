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
        "desktop-base": "bl/desktop-base", "imaging": "bl/imaging", "xfm": "bl/xfm", "mx": "bl/mx", "desktop-gpu": "bl/desktop-gpu",
        "asci": "asci/platform"}
    assert family.order()[0] in ("asci", "desktop-base")
    assert family.order(["xfm"]) == ["desktop-base", "xfm"]


def test_context_files_come_from_configuration_and_are_part_of_the_inputs(tmp_path):
    folder(tmp_path, "gpu", "FROM debian:bookworm\nCOPY pkg /pkg\n", {"context-files": "# from the site\npkg\n"})
    package = tmp_path / "site-package.tar.gz"
    package.write_bytes(b"first")
    spec = Family(tmp_path, ACCESS, "debian:bookworm", context_files={"gpu": {"pkg": package}}).specs["gpu"]
    assert spec.context_files == {"pkg": package}
    first = inputs_hash(spec, [], {})
    package.write_bytes(b"second")
    assert inputs_hash(spec, [], {}) != first


def test_context_files_that_are_missing_unknown_or_unconfigured_are_clear_errors(tmp_path):
    folder(tmp_path, "gpu", "FROM debian:bookworm\nCOPY pkg /pkg\n", {"context-files": "pkg\n"})
    with pytest.raises(BuildError, match="needs pkg: .*nowhere.tar.gz is not a readable file"):
        Family(tmp_path, ACCESS, "debian:bookworm", context_files={"gpu": {"pkg": tmp_path / "nowhere.tar.gz"}})
    with pytest.raises(BuildError, match="does not use other"):
        Family(tmp_path, ACCESS, "debian:bookworm", context_files={"gpu": {"other": tmp_path}})
    # Unconfigured: the family still loads (other images build); building this one says what to set.
    from autobuild.images import _require_context_files

    family = Family(tmp_path, ACCESS, "debian:bookworm")
    with pytest.raises(BuildError, match="needs pkg in its build context: name the file.*autobuild.image_files"):
        _require_context_files(family.specs["gpu"])


def test_the_gpu_desktop_asks_for_its_virtualgl_package():
    spec = Family(default_images_dir(), ACCESS, "debian:bookworm").specs["desktop-gpu"]
    assert spec.parents == ["desktop-base"]
    assert (spec.folder / "context-files").read_text().split() == ["virtualgl-package"]


def test_building_everything_leaves_out_images_whose_files_are_not_configured(tmp_path):
    from autobuild.images import build_family

    folder(tmp_path, "gpu", "FROM debian:bookworm\nCOPY pkg /pkg\n", {"context-files": "pkg\n"})
    folder(tmp_path, "gpu-child", CHILD % "gpu")
    family = Family(tmp_path, ACCESS, "debian:bookworm")

    class Log:
        lines: list[str] = []

        def write(self, line):
            self.lines.append(line)
    # Nothing else to build: no engine call happens, so no client is needed.
    assert build_family(None, family, None, tag="t", push=False, log=Log()) == []
    assert [line.split(":")[0] for line in Log.lines] == ["gpu", "gpu-child"]
    with pytest.raises(BuildError, match="images/gpu needs pkg"):
        build_family(None, family, ["gpu-child"], tag="t", push=False, log=Log())
