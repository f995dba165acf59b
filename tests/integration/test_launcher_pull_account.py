"""The launcher's registry account is a real pull-only one (the registry's `pull` role): a node
without the session's image pulls it with that account; a wrong password is one line and leaves
no container; and the account cannot push."""
from __future__ import annotations

from pathlib import Path

import pytest

from asci_core.launcher.errors import StartFailed
from asci_core.launcher.store import READY, STOPPED
from registry.client import Denied, RegistryClient
from tests.conftest import LABELS
from tests.integration import pull_registry
from tests.integration.launcher_support import TINY, build_launcher, make_data, tiny_environment

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry(stack, tmp_path_factory):
    started = pull_registry.start(stack, tmp_path_factory.mktemp("pull-registry"))
    yield started
    started.sandbox.stop()


@pytest.fixture
def scope(unique) -> dict[str, str]:
    return {**LABELS, "asci.test.case": unique()}


@pytest.fixture
def pushed(registry, docker_client, unique):
    """The tiny image in the registry under a name of its own, absent from the engine."""
    ref = registry.push(docker_client, TINY, f"asci-test/{unique('pull')}")
    yield ref
    try:
        docker_client.images.remove(ref)
    except Exception:  # noqa: BLE001 - only there when a test pulled it
        pass


def in_scope(docker_client, scope) -> list:
    return docker_client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in scope.items()]})


def absent(docker_client, ref: str) -> bool:
    return not docker_client.images.list(name=ref)


def launcher_for(stack, tmp_path: Path, scope, ref: str, access):
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001))
    return build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope,
                          [tiny_environment(data, image=ref)], registry=access)


def test_a_node_without_the_image_pulls_it_with_the_pull_only_account(stack, docker_client, scope, tmp_path,
                                                                      registry, pushed):
    assert absent(docker_client, pushed)
    launcher = launcher_for(stack, tmp_path, scope, pushed, registry.puller)
    try:
        record = launcher.create("alice", "tiny")
        assert record.state == READY
        container = docker_client.containers.get(record.container_id)
        assert container.attrs["Config"]["Image"] == pushed and container.status == "running"
        assert not absent(docker_client, pushed)
        # The registry's token service says who asked for the pull: the pull account.
        repository = pushed.split("/", 1)[1].rsplit(":", 1)[0]
        logged = registry.sandbox.log_path.read_text()
        assert any(pull_registry.PULLER in line and repository in line for line in logged.splitlines())
        assert registry.puller.password.reveal() not in logged
        launcher.stop(record.id)
    finally:
        launcher.close()


def test_a_wrong_password_is_one_clear_line_and_leaves_no_container(stack, docker_client, scope, tmp_path,
                                                                    registry, pushed):
    launcher = launcher_for(stack, tmp_path, scope, pushed, registry.with_password("not-the-password"))
    try:
        with pytest.raises(StartFailed) as info:
            launcher.create("alice", "tiny")
        message = str(info.value)
        assert "\n" not in message and "not-the-password" not in message
        assert f"{pushed} could not be pulled as '{pull_registry.PULLER}'" in message
        assert "unauthorized" in message.lower() or "authentication" in message.lower(), message
        assert in_scope(docker_client, scope) == [] and absent(docker_client, pushed)
        (record,) = launcher.list(include_stopped=True)
        assert record.state == STOPPED and "could not be pulled" in record.reason
    finally:
        launcher.close()


def test_the_pull_only_account_cannot_push(docker_client, registry, pushed, unique):
    # By the engine, as autobuild would push ...
    target = f"{registry.address}/asci-test/{unique('push')}"
    docker_client.images.get(TINY).tag(target, "1")
    try:
        lines = list(docker_client.api.push(target, "1", stream=True, decode=True,
                                            auth_config=registry.puller.auth_config()))
    finally:
        docker_client.images.remove(f"{target}:1")
    errors = [line["error"] for line in lines if "error" in line]
    assert errors and ("denied" in errors[-1] or "unauthorized" in errors[-1]), lines
    # ... and through the registry's API: a new tag on an image it may pull is refused.
    repository, tag = pushed.split("/", 1)[1].rsplit(":", 1)
    puller = RegistryClient(registry.puller)
    manifest = puller.get_manifest(repository, tag)
    with pytest.raises(Denied):
        puller.put_manifest(repository, "2", manifest)
    assert puller.tags(repository) == [tag]
