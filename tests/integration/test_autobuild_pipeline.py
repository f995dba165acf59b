"""A pushed tag becomes an image in the registry: both payload kinds, labels, digest, latest."""
from __future__ import annotations

import json
import uuid

import docker
import pytest
import requests

from registry.client import RegistryClient
from tests.conftest import free_port
from tests.integration.autobuild_support import (GitRemote, Serve, SlackReceiver, autobuild_config, cloud_payload,
                                                 deliver, server_payload)

TOKEN = uuid.uuid4().hex[:8]
SERVER_REPO = f"TB/app-{TOKEN}"
CLOUD_REPO = f"tbws/cloudapp-{TOKEN}"


def dockerfile(stack, text: str) -> str:
    return f"FROM {stack.config.stack.base_image.tiny_name}\nRUN echo '{text}' > /message\nCMD [\"cat\", \"/message\"]\n"


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory):
    root = tmp_path_factory.mktemp("autobuild")
    remote = GitRemote(root / "git")
    slack = SlackReceiver()
    port = free_port()
    config = autobuild_config(
        root / "asci.yaml", config=stack.config, workdir=root / "work", git_root=root / "git",
        port=port, slack_url=slack.url, notify_success=True,
        repositories=[
            # Mutable, so the CLI test can force a succeeded build to be pushed again.
            {"name": SERVER_REPO, "image": f"asci-test/app-{TOKEN}", "move_latest": True, "immutable_tags": False},
            {"name": CLOUD_REPO, "host": "cloud", "image": f"asci-test/cloudapp-{TOKEN}"},
        ])
    serve = Serve(config, port, root / "serve.log").start()
    yield {"serve": serve, "remote": remote, "slack": slack, "root": root}
    serve.stop()
    slack.close()


def pull_labels(docker_client: docker.DockerClient, stack, ref: str) -> dict:
    repo, tag = ref.rsplit(":", 1)
    image = docker_client.images.pull(repo, tag=tag, auth_config=stack.registry.auth_config())
    return image


def test_server_tag_push_builds_pushes_and_moves_latest(env, stack, docker_client):
    serve, remote = env["serve"], env["remote"]
    tree = remote.create(SERVER_REPO, {"Dockerfile": dockerfile(stack, "server one")})
    commit = tree.tag("v1.0.0")
    resp = deliver(serve.url, server_payload(SERVER_REPO, "v1.0.0", commit))
    assert resp.status_code == 202, resp.text
    change = resp.json()["changes"][0]
    assert change["result"] == "queued" and change["tag"] == "v1.0.0"
    build = serve.wait(change["build_id"])
    assert build["status"] == "succeeded", serve.log(build["id"])
    assert [s["name"] for s in build["stages"]] == ["clone", "build", "push", "verify", "latest"]
    assert all(s["outcome"] == "ok" and s["finished_at"] >= s["started_at"] for s in build["stages"])

    image = f"{stack.registry.address}/asci-test/app-{TOKEN}"
    client = RegistryClient(stack.registry)
    assert client.manifest_digest(f"asci-test/app-{TOKEN}", "v1.0.0") == build["digest"]
    assert client.manifest_digest(f"asci-test/app-{TOKEN}", "latest") == build["digest"]

    docker_client.images.remove(f"{image}:v1.0.0", force=True)
    pulled = docker_client.images.pull(image, tag="v1.0.0", auth_config=stack.registry.auth_config())
    assert f"{image}@{build['digest']}" in pulled.attrs["RepoDigests"]
    labels = pulled.labels
    assert labels["org.opencontainers.image.revision"] == commit
    assert labels["org.opencontainers.image.version"] == "v1.0.0"
    assert labels["org.opencontainers.image.source"] == f"https://bitbucket.test.invalid/projects/TB/repos/app-{TOKEN}"
    assert labels["org.opencontainers.image.created"].startswith("20")
    out = docker_client.containers.run(f"{image}:v1.0.0", remove=True)
    assert out.decode().strip() == "server one"

    # An older version built later does not take latest away from the higher one.
    tree.commit({"Dockerfile": dockerfile(stack, "hotfix")}, "hotfix")
    old = tree.tag("v0.9.5")
    second = serve.wait(deliver(serve.url, server_payload(SERVER_REPO, "v0.9.5", old)).json()["changes"][0]["build_id"])
    assert second["status"] == "succeeded"
    assert second["stages"][-1]["note"] == "a higher version holds latest"
    assert client.manifest_digest(f"asci-test/app-{TOKEN}", "latest") == build["digest"]

    log = serve.log(build["id"])
    assert "==> clone" in log and "Successfully built" in log and f"pushed {image}:v1.0.0 as {build['digest']}" in log
    success = [m for m in env["slack"].wait_for(2) if "built and pushed" in json.dumps(m)]
    assert len(success) == 2


def test_cloud_tag_push_builds(env, stack):
    serve, remote = env["serve"], env["remote"]
    tree = remote.create(CLOUD_REPO, {"Dockerfile": dockerfile(stack, "cloud one")})
    commit = tree.tag("2.3.4")
    resp = deliver(serve.url, cloud_payload(CLOUD_REPO, "2.3.4", commit), event="repo:push", cloud=True)
    assert resp.status_code == 202, resp.text
    build = serve.wait(resp.json()["changes"][0]["build_id"])
    assert build["status"] == "succeeded", serve.log(build["id"])
    assert [s["name"] for s in build["stages"]] == ["clone", "build", "push", "verify"]
    client = RegistryClient(stack.registry)
    assert client.manifest_digest(f"asci-test/cloudapp-{TOKEN}", "2.3.4") == build["digest"]
    assert client.tags(f"asci-test/cloudapp-{TOKEN}") == ["2.3.4"]  # latest not configured here


def test_metrics_and_health(env):
    serve = env["serve"]
    text = requests.get(f"{serve.url}/metrics", timeout=5).text
    assert "asci_autobuild_queue_depth" in text
    assert 'asci_autobuild_builds_finished_total{outcome="succeeded"}' in text
    assert 'asci_autobuild_stage_duration_seconds_count{stage="push"}' in text
    assert requests.get(f"{serve.url}/healthz", timeout=5).json()["status"] == "ok"


def test_builds_cli_lists_shows_logs_retries_and_graphs(env):
    import subprocess

    from tests.integration.autobuild_support import ASCI

    serve = env["serve"]

    def asci(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([ASCI, "builds", "--url", serve.url, *args], capture_output=True, text=True, timeout=120)

    first = serve.builds(repository=SERVER_REPO)[-1]
    listed = asci("list", "--repository", SERVER_REPO)
    assert listed.returncode == 0 and f"{first['id']:>5}  succeeded" in listed.stdout
    shown = asci("show", str(first["id"]))
    assert shown.returncode == 0 and f"digest     {first['digest']}" in shown.stdout
    assert "stage clone    ok" in shown.stdout
    log = asci("log", str(first["id"]))
    assert log.returncode == 0 and "==> push done" in log.stdout
    unchanged = asci("retry", str(first["id"]))  # a success is a release: not built again unless forced
    assert unchanged.returncode == 0 and "already succeeded; nothing queued" in unchanged.stdout
    retried = asci("retry", "--force", str(first["id"]))
    assert retried.returncode == 0 and retried.stdout.startswith("queued build ")
    new_id = int(retried.stdout.split()[2])
    followed = asci("log", "-f", str(new_id))  # returns only when the build has ended
    assert followed.returncode == 0 and "==> succeeded: sha256:" in followed.stdout
    assert serve.build(new_id)["status"] == "succeeded" and serve.build(new_id)["triggered_by"] == first["id"]
    assert asci("graph").returncode == 0
    missing = asci("show", "999999")
    assert missing.returncode == 1 and missing.stderr.strip() == "asci builds: no build 999999 (HTTP 404)"
    down = subprocess.run([ASCI, "builds", "--url", "http://127.0.0.1:9", "list"], capture_output=True, text=True)
    assert down.returncode == 1 and "no ASCI service answers at http://127.0.0.1:9" in down.stderr


def test_build_finished_line_feeds_the_autobuild_ingest_pipeline(env, stack):
    """The contract with logging: autobuild's real log line becomes build.* fields in the search engine."""
    from tests.integration.logging_support import LogSite

    line = next(text for text in (env["root"] / "serve.log").read_text().splitlines()
                if '"message":"build finished"' in text and '"outcome":"success"' in text)
    site = LogSite(f"asci-test-autobuild-contract-{TOKEN}", stack.search_url)
    site.install()
    try:
        resp = requests.post(f"{stack.search_url}/_ingest/pipeline/{site.prefix}-autobuild/_simulate", timeout=30,
                             json={"docs": [{"_source": {"message": line, "event": {"dataset": "autobuild"}}}]})
        doc = resp.json()["docs"][0]["doc"]["_source"]
    finally:
        site.remove()
    assert doc["build"]["outcome"] == "success"
    assert doc["build"]["repository"] == SERVER_REPO and doc["build"]["tag"] in ("v1.0.0", "v0.9.5")
    assert doc["build"]["duration_ms"] > 0
    assert "tags" not in doc  # parsed cleanly, no failure tag
