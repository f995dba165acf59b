"""The registry the stack started: auth enforced, pushes round-trip with their digest."""
from __future__ import annotations

import io
import stat

import pytest
import requests
import yaml

from registry.client import NotFound, RegistryClient
from registry.service import registry_dir
from tests.conftest import LABELS


def build_small_image(docker_client, stack, ref: str, content: str):
    dockerfile = f"FROM {stack.config.stack.base_image.tiny_name}\nRUN echo '{content}' > /content\n"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ref, rm=True,
                                          labels=LABELS)
    return image


def push_lines(docker_client, ref: str, auth_config=None) -> list[dict]:
    repo, tag = ref.rsplit(":", 1)
    return list(docker_client.api.push(repo, tag, stream=True, decode=True, auth_config=auth_config))


def test_unauthenticated_requests_are_refused(stack):
    resp = requests.get(f"{stack.registry.url}/v2/_catalog", timeout=5)
    assert resp.status_code == 401
    assert resp.json()["errors"][0]["code"] == "UNAUTHORIZED"
    wrong = requests.get(f"{stack.registry.url}/v2/_catalog", auth=(stack.registry.username, "wrong"), timeout=5)
    assert wrong.status_code == 401


def test_push_without_credentials_is_refused(docker_client, stack, unique):
    ref = f"{stack.registry.address}/{unique('anon')}:v1"
    build_small_image(docker_client, stack, ref, "anonymous")
    try:
        lines = push_lines(docker_client, ref)
        errors = [line["error"] for line in lines if "error" in line]
        # htpasswd auth refuses in the engine ("no basic auth credentials"), token auth at the token service.
        assert errors and ("no basic auth credentials" in errors[-1] or "unauthorized" in errors[-1])
        repo = ref.split("/", 1)[1].split(":")[0]
        with pytest.raises(NotFound):  # nothing arrived
            RegistryClient(stack.registry).tags(repo)
    finally:
        docker_client.images.remove(ref, force=True)


def test_authenticated_push_pulls_back_with_the_same_digest(docker_client, stack, unique):
    repo = f"{stack.registry.address}/{unique('auth')}"
    ref = f"{repo}:v1"
    build_small_image(docker_client, stack, ref, "authenticated")
    lines = push_lines(docker_client, ref, stack.registry.auth_config())
    assert not [line for line in lines if "error" in line]
    pushed = next(line["aux"]["Digest"] for line in lines if "aux" in line)

    name = repo.split("/", 1)[1]
    assert RegistryClient(stack.registry).manifest_digest(name, "v1") == pushed

    docker_client.images.remove(ref, force=True)
    pulled = docker_client.images.pull(repo, tag="v1", auth_config=stack.registry.auth_config())
    try:
        assert f"{repo}@{pushed}" in pulled.attrs["RepoDigests"]
        out = docker_client.containers.run(ref, ["cat", "/content"], remove=True, labels=LABELS)
        assert out.decode().strip() == "authenticated"
    finally:
        docker_client.images.remove(ref, force=True)


def test_generated_credentials_are_private(stack):
    directory = registry_dir(stack.config)
    names = ["credentials.json", "htpasswd", "config.yml"]
    if "token" in yaml.safe_load((directory / "config.yml").read_text())["auth"]:
        names += ["roles.json", "token.key"]  # the token service's user roles and signing key
    for name in names:
        mode = stat.S_IMODE((directory / name).stat().st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    htpasswd = (directory / "htpasswd").read_text()
    assert htpasswd.startswith(f"{stack.registry.username}:$2b$")  # bcrypt, never plain
    assert stack.registry.password.reveal() not in htpasswd
