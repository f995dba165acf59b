"""Images a session takes: `REPOSITORY@newest` is the highest release in the facility registry,
pulled with the registry credentials when the node lacks it; the directory's group ids reach
the session."""
from __future__ import annotations

import pytest

from asci_core.launcher.errors import StartFailed
from registry.client import RegistryClient
from tests.conftest import LABELS
from tests.integration.launcher_support import TINY, build_launcher, make_data, tiny_environment

pytestmark = pytest.mark.integration

TAGS = ("1.2.0", "1.10.0", "2.0.0-rc.1", "latest")


@pytest.fixture
def scope(unique) -> dict[str, str]:
    return {**LABELS, "asci.test.case": unique()}


@pytest.fixture
def released(stack, docker_client, unique):
    """A repository of our own in the shared registry holding TAGS, none of them on the engine."""
    repository = f"asci-test/{unique('rel')}"
    ref = f"{stack.registry.address}/{repository}"
    tiny = docker_client.images.get(TINY)
    for tag in TAGS:
        tiny.tag(ref, tag)
        errors = [line for line in docker_client.api.push(ref, tag, stream=True, decode=True,
                                                          auth_config=stack.registry.auth_config()) if "error" in line]
        assert not errors, errors
    for tag in TAGS:
        docker_client.images.remove(f"{ref}:{tag}")
    yield ref, repository
    client = RegistryClient(stack.registry)
    for tag in TAGS:
        try:
            client.delete_manifest(repository, client.manifest_digest(repository, tag))
        except Exception:  # noqa: BLE001 - the same digest under several tags goes once
            pass
        try:
            docker_client.images.remove(f"{ref}:{tag}")
        except Exception:  # noqa: BLE001 - only the resolved tag was pulled
            pass


def test_newest_release_is_resolved_and_pulled_with_the_registry_credentials(stack, docker_client, scope, tmp_path,
                                                                          released):
    ref, repository = released
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001))
    env = tiny_environment(data, image=f"{ref}@newest")
    with pytest.raises(Exception):
        docker_client.images.get(f"{ref}:1.10.0")  # really absent: the launcher must pull it
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [env], registry=stack.registry)
    try:
        record = launcher.create("alice", "tiny")
        container = docker_client.containers.get(record.container_id)
        # 1.10.0 beats 1.2.0 (versions, not strings); the pre-release and `latest` never count.
        assert container.attrs["Config"]["Image"] == f"{ref}:1.10.0"
        assert f"{ref}:1.10.0" in docker_client.images.get(f"{ref}:1.10.0").tags
        launcher.stop(record.id)
    finally:
        launcher.close()


def test_newest_without_credentials_or_without_a_release_starts_nothing(stack, docker_client, scope, tmp_path,
                                                                       released):
    from dataclasses import replace
    ref, repository = released
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001))
    env = tiny_environment(data, image=f"{ref}@newest")
    anonymous = replace(stack.registry, username=None, password=None)
    for registry, words in ((anonymous, "the registry did not list the tags"), (stack.registry, "has no release tag")):
        if registry is stack.registry:  # every tag names one image: deleting it leaves no release
            client = RegistryClient(stack.registry)
            client.delete_manifest(repository, client.manifest_digest(repository, "1.10.0"))
        launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [env], registry=registry)
        try:
            with pytest.raises(StartFailed, match=words):
                launcher.create("alice", "tiny")
            assert docker_client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in scope.items()]}) == []
            assert {r.state for r in launcher.list(include_stopped=True)} == {"stopped"}
        finally:
            launcher.close()


def test_the_directorys_group_ids_reach_an_engine_account_session(stack, docker_client, scope, tmp_path):
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001))
    (tmp_path / "users.yaml").write_text("users:\n  - {name: alice, uid: 5001, gid: 5001, groups: [i03, i04]}\n"
                                         "groups: {i03: 7003, i04: 7004}\n")
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [tiny_environment(data)])
    try:
        record = launcher.create("alice", "tiny")
        container = docker_client.containers.get(record.container_id)
        out = container.exec_run(["id", "-G"]).output.decode().split()
        assert sorted(out) == ["5001", "7003", "7004"]
        launcher.stop(record.id)
    finally:
        launcher.close()
