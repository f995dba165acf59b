"""The image family: content-addressed builds, parents first, push verified, and each child's software."""
from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from autobuild.images import INPUTS_LABEL, Family, build_family, content_tag
from registry.client import RegistryClient
from tests.conftest import LABELS
from tests.integration.images_support import (TAG, _QuietLog, address, family, image, run_desktop, set_password,
                                              wait_for)
from tests.integration.rfb_client import RfbClient

pytestmark = pytest.mark.integration

ASCI = str(Path(sys.executable).with_name("asci"))


def tiny_family(root: Path, stack) -> tuple[Family, str, str]:
    """Two tiny images in ROOT: PARENT FROM the stack's busybox image, CHILD FROM PARENT through the ARGs."""
    token = uuid.uuid4().hex[:8]
    parent, child = f"asci-test-parent-{token}", f"asci-test-child-{token}"
    (root / parent).mkdir(parents=True)
    (root / parent / "Dockerfile").write_text("ARG BASE_IMAGE=debian:bookworm\nFROM ${BASE_IMAGE}\n"
                                              "COPY hello.txt /hello.txt\n")
    (root / parent / "hello.txt").write_text("one\n")
    (root / child).mkdir()
    (root / child / "Dockerfile").write_text(f"ARG REGISTRY=127.0.0.1:5000\nARG BASE_TAG=latest\n"
                                             f"FROM ${{REGISTRY}}/bl/{parent}:${{BASE_TAG}}\nCOPY note /note\n")
    (root / child / "note").write_text("child\n")
    return Family(root, stack.registry, stack.config.stack.base_image.tiny_name), parent, child


def test_unchanged_inputs_are_a_cache_hit_and_a_changed_parent_rebuilds_its_children(stack, docker_client, tmp_path):
    fam, parent, child = tiny_family(tmp_path, stack)
    assert fam.order([child]) == [parent, child]
    first = build_family(docker_client, fam, [child], tag="t1", push=False, log=_QuietLog())
    assert [(o.name, o.cached) for o in first] == [(parent, False), (child, False)]

    # An untagged image FROM the parent inherits its labels (as a build in progress leaves them):
    # it must never be taken for the parent.
    lookalike = tmp_path / "lookalike"
    lookalike.mkdir()
    (lookalike / "Dockerfile").write_text(f"FROM {first[0].ref}\nRUN echo other > /other\n")
    other, _ = docker_client.images.build(path=str(lookalike), rm=True, labels=LABELS)
    assert other.labels[INPUTS_LABEL] == first[0].inputs

    log = _QuietLog()
    again = build_family(docker_client, fam, [child], tag="t1", push=False, log=log)
    assert [(o.name, o.cached) for o in again] == [(parent, True), (child, True)]
    assert [o.image_id for o in again] == [o.image_id for o in first]
    assert not any(line.startswith("building ") for line in log.lines)  # no docker build at all

    (tmp_path / parent / "hello.txt").write_text("two\n")
    changed = build_family(docker_client, fam, [child], tag="t1", push=False, log=_QuietLog())
    assert [(o.name, o.cached) for o in changed] == [(parent, False), (child, False)]
    assert changed[1].image_id != first[1].image_id
    labels = docker_client.images.get(changed[1].ref).labels
    assert labels[INPUTS_LABEL] == changed[1].inputs
    assert labels["org.opencontainers.image.base.name"] == fam.ref(parent, content_tag(changed[0].inputs))
    # Built FROM the parent by its content tag: the child's layers extend exactly this parent's.
    parent_layers = docker_client.images.get(changed[0].image_id).attrs["RootFS"]["Layers"]
    assert docker_client.images.get(changed[1].image_id).attrs["RootFS"]["Layers"][:len(parent_layers)] == parent_layers
    assert docker_client.images.get(changed[1].ref).id == changed[1].image_id


def test_push_is_verified_against_the_registry_digest(stack, docker_client, tmp_path):
    fam, parent, child = tiny_family(tmp_path, stack)
    pushed = build_family(docker_client, fam, [child], tag="t2", push=True, log=_QuietLog())
    for outcome in pushed:
        stored = RegistryClient(stack.registry).manifest_digest(fam.specs[outcome.name].repository, "t2")
        assert outcome.digest == stored


def test_cli_builds_lists_and_refuses_unknown_names(stack, tmp_path, docker_client):
    fam, parent, child = tiny_family(tmp_path, stack)
    env_config = []  # the embedded defaults: the same registry the stack runs
    done = subprocess.run([ASCI, *env_config, "images", "--dir", str(tmp_path), "build", child, "--tag", "t3",
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [o["name"] for o in json.loads(done.stdout)] == [parent, child]
    listed = subprocess.run([ASCI, "images", "--dir", str(tmp_path), "list"], capture_output=True, text=True,
                            timeout=60)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].startswith(parent) and any(line.startswith(f"  {child}") for line in lines)
    assert any("t3" in line and "MB" in line for line in lines)
    bad = subprocess.run([ASCI, "images", "--dir", str(tmp_path), "build", "no-such-image"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and "no image folder named no-such-image" in bad.stderr


def test_the_family_is_parents_first_from_the_from_lines(stack):
    fam = family(stack)
    assert set(fam.specs) >= {"desktop-base", "imaging", "xfm", "mx", "asci"}
    order = fam.order(["mx", "imaging"])
    assert order == ["desktop-base", "imaging", "mx"]
    for child in ("imaging", "xfm", "mx"):
        assert fam.specs[child].parents == ["desktop-base"]
    assert fam.specs["desktop-base"].external_bases == [stack.config.stack.base_image.name]


def _layers(docker_client, ref: str) -> list[str]:
    return docker_client.images.get(ref).attrs["RootFS"]["Layers"]


CHILD_CHECKS = {
    "imaging": ["sh", "-c", "test -f /usr/share/java/ij.jar && command -v imagej && "
                            "python3 -c 'import skimage; print(skimage.__version__)'"],
    "xfm": ["sh", "-c", "python3 -c 'import PyMca5, silx, h5py; print(PyMca5.version(), silx.version)' "
                        "&& command -v pymca && command -v silx"],
    "mx": ["sh", "-c", "dials.version && python3 -c 'import pymol; print(pymol.__file__)' && command -v pymol"],
}


@pytest.mark.parametrize("name", sorted(CHILD_CHECKS))
def test_each_child_contains_its_software_and_is_built_from_the_base(stack, docker_client, name):
    child = image(stack, docker_client, name)
    base = image(stack, docker_client, "desktop-base")
    # FROM chain: the child's layers extend the base's, which extend the bootstrapped Debian's.
    debian = _layers(docker_client, stack.config.stack.base_image.name)
    assert _layers(docker_client, base.ref)[:len(debian)] == debian
    assert _layers(docker_client, child.ref)[:len(_layers(docker_client, base.ref))] == _layers(docker_client, base.ref)
    output = docker_client.containers.run(child.ref, CHILD_CHECKS[name], entrypoint=[], remove=True, labels=LABELS)
    assert output.strip(), name
    # Every launcher the image puts in the menu and on the desktop starts a command that exists.
    launchers = docker_client.containers.run(
        child.ref, ["sh", "-c", "for f in /usr/share/asci/desktop/*.desktop; do "
                                "sed -n 's/^Exec=\\([^ ]*\\).*/\\1/p' \"$f\"; done"],
        entrypoint=[], remove=True, labels=LABELS).decode().split()
    assert launchers, f"{name} has no launcher"
    for command in launchers:
        docker_client.containers.run(child.ref, ["sh", "-c", f"command -v {command}"], entrypoint=[], remove=True,
                                     labels=LABELS)


def test_the_readme_tag_is_what_the_tests_build(stack, docker_client):
    base = image(stack, docker_client, "desktop-base")
    assert base.ref == f"{stack.registry.address}/bl/desktop-base:{TAG}"


TITLES = {"imaging": "Medical Imaging", "xfm": "X-ray Fluorescence Microscopy", "mx": "Micro-crystallography"}


@pytest.mark.parametrize("name", sorted(TITLES))
def test_each_child_starts_a_session_named_after_its_environment_with_its_icons(stack, docker_client, name, unique):
    child = image(stack, docker_client, name)
    container = run_desktop(docker_client, child.ref, unique(name), ASCI_USER="dana", ASCI_UID="6001")
    try:
        ip = address(container)
        banner = wait_for("the RFB banner", lambda: RfbClient(ip).banner(), timeout=30)
        assert banner == b"RFB 003.008\n"
        # The random first password is unknown to us: set one, as the launcher does.
        code, output = set_password(docker_client, container, "Child-pw", user="6001:6001")
        assert code == 0, output
        with RfbClient(ip) as client:
            client.login("Child-pw")
            assert client.name == TITLES[name]
        icons = container.exec_run(["ls", "/home/dana/Desktop"], user="6001").output.decode().split()
        assert "asci-environment.desktop" in icons
        assert any(icon.startswith("asci-") and icon != "asci-environment.desktop" for icon in icons), icons
    finally:
        container.remove(force=True)
