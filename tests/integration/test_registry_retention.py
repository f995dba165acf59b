"""Retention, garbage collection, promotion and pagination on a registry of our own.

Images are assembled through the registry API on top of the pushed `asci/tiny`
layer, so each has a chosen creation date and its own incompressible layer
(whose bytes GC must free), and still pulls and runs in the real engine.
"""
from __future__ import annotations

import copy
import datetime as _dt
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from registry.client import DOCKER_MANIFEST, OCI_INDEX, Manifest, NotFound, RegistryClient
from registry.gc import disk_usage
from tests.conftest import LABELS
from tests.support.sandbox import Sandbox

ASCI = str(Path(sys.executable).with_name("asci"))
PAYLOAD = 256 * 1024
NOW = _dt.datetime.now(_dt.timezone.utc)
OLD = NOW - _dt.timedelta(days=400)


def asci(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ASCI, "-c", str(config), "--log-level", "warning", "registry", *args],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def sandbox(stack, tmp_path_factory):
    sb = Sandbox(stack.config, tmp_path_factory.mktemp("registry-retention")).start()
    yield sb
    sb.stop()


@pytest.fixture(scope="module")
def base(sandbox, docker_client, stack):
    """asci/tiny pushed once; its manifest and config are the base of every assembled image."""
    repo = "asci-test-retention-base"
    tiny = stack.config.stack.base_image.tiny_name
    docker_client.api.tag(tiny, f"{sandbox.address}/{repo}", "latest")
    lines = list(docker_client.api.push(f"{sandbox.address}/{repo}", "latest", stream=True, decode=True,
                                        auth_config=sandbox.access.auth_config()))
    assert not [line for line in lines if "error" in line], lines
    docker_client.images.remove(f"{sandbox.address}/{repo}:latest")
    client = sandbox.client()
    manifest = client.get_manifest(repo, "latest")
    return repo, manifest.data, client.image_config(manifest)


def assemble(client: RegistryClient, base, repo: str, tag: str, created: _dt.datetime, seed: str) -> str:
    """Put an image under REPO:TAG: the base layers (mounted) plus one random 256 KiB layer."""
    base_repo, base_manifest, base_config = base
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        data = os.urandom(PAYLOAD)
        info = tarfile.TarInfo("payload")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        label = f"{seed}\n".encode()
        info = tarfile.TarInfo("seed")
        info.size = len(label)
        tar.addfile(info, io.BytesIO(label))
    layer_tar = tar_bytes.getvalue()
    layer = gzip.compress(layer_tar, compresslevel=1)
    for blob in [base_manifest["config"]["digest"]] + [lyr["digest"] for lyr in base_manifest["layers"]]:
        client.mount_blob(repo, blob, base_repo)
    config = copy.deepcopy(base_config)
    config["created"] = created.isoformat().replace("+00:00", "Z")
    config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(layer_tar).hexdigest())
    config.setdefault("history", []).append({"created": config["created"], "created_by": f"test {seed}"})
    config_bytes = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config_bytes),
                   "digest": client.upload_blob(repo, config_bytes)},
        "layers": base_manifest["layers"] + [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                              "size": len(layer), "digest": client.upload_blob(repo, layer)}],
    }
    body = json.dumps(manifest).encode()
    return client.put_manifest(repo, tag, Manifest(repo, "sha256:" + hashlib.sha256(body).hexdigest(),
                                                   DOCKER_MANIFEST, body))


def test_retention_keeps_exactly_the_policy_then_gc_frees_disk(sandbox, base, docker_client, unique):
    client = sandbox.client()
    repo = unique("ret")
    digests: dict[str, str] = {}
    for tag in ("v1.2.8", "v1.2.9", "v1.2.10", "v1.10.0-rc.1", "v1.10.0-rc.2", "v1.10.0-rc.10",
                "v1.0.0", "v0.9.0", "v1.1.0", "nightly", "old-experiment"):
        digests[tag] = assemble(client, base, repo, tag, OLD, tag)
    digests["fresh"] = assemble(client, base, repo, "fresh", NOW - _dt.timedelta(days=1), "fresh")
    for alias, target in (("latest", "v1.2.10"), ("build-42", "v1.2.9")):  # two tags, one digest
        client.copy(repo, target, repo, alias)
        digests[alias] = digests[target]

    # v1.0.0 runs as an ASCI component: pulled from this registry and labelled.
    ref = f"{sandbox.address}/{repo}:v1.0.0"
    docker_client.images.pull(f"{sandbox.address}/{repo}", tag="v1.0.0", auth_config=sandbox.access.auth_config())
    container = docker_client.containers.run(ref, ["sleep", "300"], detach=True, name=unique("deployed"),
                                             labels={**LABELS, "asci.component": "retention-test"})
    docker_client.images.remove(ref, force=True)  # deployed is judged by the container, not by a local tag
    expected_kept = {"v1.2.10", "v1.2.9", "latest", "build-42", "v1.10.0-rc.10", "v1.0.0", "v0.9.0", "fresh"}
    config = sandbox.variant("retain.yaml", {
        "retention": [{"repository": repo, "keep_last": 2, "keep_last_prereleases": 1,
                       "keep_tags": ["latest"], "keep_days": 7}],
        "deployed": [f"{repo}:v0.9.0"],
    })
    try:
        dry = asci(config, "retain", "--dry-run", "--json", repo)
        assert dry.returncode == 0, dry.stderr
        dry_plan = json.loads(dry.stdout)["plan"]
        (planned,) = dry_plan["repositories"]
        why = {t["tag"]: t["why"] for t in planned["tags"]}
        kept = {t["tag"] for t in planned["tags"] if t["keep"]}
        assert kept == expected_kept, why
        assert why["build-42"] == "shares its digest with kept tag v1.2.9"
        assert why["v1.0.0"].startswith("deployed: container ") and "asci.component=retention-test" in why["v1.0.0"]
        assert why["v0.9.0"] == "deployed: listed in registry.deployed"
        assert why["fresh"].startswith("built 1 day(s) ago")
        assert why["v1.2.8"] == "matched no keep rule"
        gone = set(digests) - expected_kept
        assert planned["delete_digests"] == sorted({digests[t] for t in gone})
        assert set(client.tags(repo)) == set(digests)  # a dry run changes nothing

        data = sandbox.config.stack.state_dir / "registry" / "data"
        before = disk_usage(data)
        applied = asci(config, "retain", "--json", repo)
        assert applied.returncode == 0, applied.stderr
        out = json.loads(applied.stdout)
        assert out["plan"] == dry_plan  # the dry run said exactly what apply did
        assert sorted(d["digest"] for d in out["applied"]["deleted"]) == planned["delete_digests"]
        assert out["gc"]["registry_restarted"] is True and out["gc"]["blobs_deleted"] >= 2 * len(gone)
        after = disk_usage(data)
        # Each deleted image had its own 256 KiB random layer and config: at least that much is gone from disk.
        assert before - after >= len(gone) * PAYLOAD, (before, after)
        assert out["gc"]["bytes_freed"] == out["gc"]["bytes_before"] - out["gc"]["bytes_after"] > 0

        assert set(client.tags(repo)) == expected_kept
        for tag in expected_kept:
            assert client.manifest_digest(repo, tag) == digests[tag]
            pulled = docker_client.images.pull(f"{sandbox.address}/{repo}", tag=tag,
                                               auth_config=sandbox.access.auth_config())
            assert f"{sandbox.address}/{repo}@{digests[tag]}" in pulled.attrs["RepoDigests"]
        out = docker_client.containers.run(f"{sandbox.address}/{repo}:fresh", ["cat", "/seed"], remove=True,
                                           labels=LABELS)
        assert out.decode().strip() == "fresh"
        for tag in gone:
            with pytest.raises(NotFound):
                client.manifest_digest(repo, digests[tag])
    finally:
        container.remove(force=True)
        for tag in expected_kept | {"v1.0.0"}:
            try:
                docker_client.images.remove(f"{sandbox.address}/{repo}:{tag}", force=True)
            except Exception:
                pass


def _log_size(sb: Sandbox) -> int:
    return sb.log_path.stat().st_size


def _log_since(sb: Sandbox, offset: int) -> list[str]:
    with open(sb.log_path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace").splitlines()


def test_promotion_moves_no_layer_and_keeps_the_digest(sandbox, docker_client, stack, unique):
    src, dst = unique("testing"), unique("production")
    ref = f"{sandbox.address}/{src}:v2.0.0"
    marker = unique("content")
    dockerfile = (f"FROM {stack.config.stack.base_image.tiny_name}\n"
                  f"RUN echo '{marker}' > /one\nRUN echo two > /two\nRUN head -c 300000 /dev/urandom > /three\n")
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=ref, rm=True, labels=LABELS)
    lines = list(docker_client.api.push(f"{sandbox.address}/{src}", "v2.0.0", stream=True, decode=True,
                                        auth_config=sandbox.access.auth_config()))
    assert not [line for line in lines if "error" in line]
    digest = next(line["aux"]["Digest"] for line in lines if "aux" in line)
    docker_client.images.remove(ref)
    layers = len(sandbox.client().get_manifest(src, "v2.0.0").data["layers"])
    assert layers >= 4

    offset = _log_size(sandbox)
    result = asci(sandbox.config_path, "promote", f"{src}:v2.0.0", f"{dst}:v2.0.0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"promoted {src}:v2.0.0 -> {dst}:v2.0.0 ({digest})"
    requests_seen = [line for line in _log_since(sandbox, offset) if '] "' in line]  # access-log lines
    blob_downloads = [line for line in requests_seen if '"GET /v2/' in line and "/blobs/" in line]
    mounts = [line for line in requests_seen if '"POST /v2/' in line and "mount=" in line]
    assert blob_downloads == []  # not one layer (or config) left the registry
    assert len(mounts) == layers + 1  # every layer and the config were mounted cross-repository

    client = sandbox.client()
    assert client.manifest_digest(dst, "v2.0.0") == digest
    promoted = f"{sandbox.address}/{dst}"
    try:
        pulled = docker_client.images.pull(promoted, tag="v2.0.0", auth_config=sandbox.access.auth_config())
        assert f"{promoted}@{digest}" in pulled.attrs["RepoDigests"]
        out = docker_client.containers.run(f"{promoted}:v2.0.0", ["cat", "/one"], remove=True, labels=LABELS)
        assert out.decode().strip() == marker
    finally:
        docker_client.images.remove(f"{promoted}:v2.0.0", force=True)

    # A manifest list (OCI index) promotes with its per-platform manifests, digest unchanged.
    child = client.get_manifest(src, digest)
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{
        "mediaType": child.media_type, "digest": child.digest, "size": len(child.body),
        "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()
    index_digest = client.put_manifest(src, "multi", Manifest(src, "sha256:" + hashlib.sha256(index).hexdigest(),
                                                              OCI_INDEX, index))
    assert client.promote(f"{src}:multi", f"{dst}-multi:stable") == index_digest
    assert client.manifest_digest(f"{dst}-multi", "stable") == index_digest
    assert client.manifest_digest(f"{dst}-multi", child.digest) == child.digest


def test_pagination_returns_every_tag_and_repository_exactly_once(sandbox, base, unique):
    client = sandbox.client()
    repo = unique("many")
    first = assemble(client, base, repo, "seed", OLD, "many")
    manifest = client.get_manifest(repo, first)
    tags = [f"v1.{i // 50}.{i % 50}" for i in range(300)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda t: client.put_manifest(repo, t, manifest), tags))
    listed = client.tags(repo, page_size=100)
    assert len(listed) == len(set(listed)) == 301 and set(listed) == set(tags) | {"seed"}

    # The catalogue is paginated by Distribution itself: 260 repositories, pages of 100.
    prefix = unique("cat")
    names = [f"{prefix}/r{i:03d}" for i in range(260)]
    config_digest = manifest.data["config"]["digest"]

    def make(name: str) -> None:
        client.mount_blob(name, config_digest, repo)
        for layer in manifest.data["layers"]:
            client.mount_blob(name, layer["digest"], repo)
        client.put_manifest(name, "v1", manifest)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(make, names))
    first_page = client.request("GET", "/v2/_catalog", what="catalog", scopes=("registry:catalog:*",),
                                params={"n": 100})
    assert 'rel="next"' in first_page.headers.get("Link", "")  # the registry really paginated
    catalog = client.catalog(page_size=100)
    assert len(catalog) == len(set(catalog))
    assert set(names) <= set(catalog) and len(catalog) >= 261


def test_a_container_pulled_through_another_host_name_keeps_its_image(sandbox, base, docker_client, unique):
    """localhost:PORT and 127.0.0.1:PORT are one registry: what runs is recognised by content."""
    client = sandbox.client()
    repo = unique("alias")
    digests = {tag: assemble(client, base, repo, tag, OLD, tag) for tag in ("v1.0.0", "v1.1.0", "v1.2.0")}
    alias = sandbox.address.replace("127.0.0.1", "localhost")
    assert alias != sandbox.address
    containers = []
    try:
        for tag in ("v1.0.0", "v1.1.0"):
            docker_client.images.pull(f"{alias}/{repo}", tag=tag, auth_config=sandbox.access.auth_config())
            containers.append(docker_client.containers.run(
                f"{alias}/{repo}:{tag}", ["sleep", "300"], detach=True, name=unique(f"alias-{tag}"),
                labels={**LABELS, "asci.component": "alias-test"}))
        # v1.1.0's local name is gone: only the engine's image id still says what it runs.
        docker_client.images.remove(f"{alias}/{repo}:v1.1.0", force=True)
        assert not docker_client.images.get(containers[1].image.id).attrs["RepoTags"]

        config = sandbox.variant("alias.yaml", {"retention": [{"repository": repo, "keep_last": 0, "keep_tags": []}]})
        dry = asci(config, "retain", "--dry-run", "--json", repo)
        assert dry.returncode == 0, dry.stderr
        (planned,) = json.loads(dry.stdout)["plan"]["repositories"]
        why = {t["tag"]: t["why"] for t in planned["tags"]}
        for tag in ("v1.0.0", "v1.1.0"):
            assert why[tag].startswith("deployed: container ") and "asci.component=alias-test" in why[tag], why
        assert planned["delete_digests"] == [digests["v1.2.0"]]

        applied = asci(config, "retain", "--no-gc", "--json", repo)
        assert applied.returncode == 0, applied.stderr
        assert sorted(client.tags(repo)) == ["v1.0.0", "v1.1.0"]
        assert client.manifest_digest(repo, "v1.1.0") == digests["v1.1.0"]
        with pytest.raises(NotFound):
            client.manifest_digest(repo, digests["v1.2.0"])
        for container in containers:
            container.reload()
            assert container.status == "running"
    finally:
        for container in containers:
            container.remove(force=True)
        for tag in ("v1.0.0", "v1.1.0"):
            try:
                docker_client.images.remove(f"{alias}/{repo}:{tag}", force=True)
            except Exception:
                pass
