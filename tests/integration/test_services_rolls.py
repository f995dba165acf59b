"""ASCI's services follow their images end to end: git tag -> webhook -> autobuild -> registry -> rolled.

One real `asci serve` (autobuild and the services runner), the real engine, registry and git; Slack is
the loopback receiver. The service is busybox httpd serving /version and, when healthy, /healthz.
"""
from __future__ import annotations

import io
import json
import subprocess
import time
import uuid

import pytest
import requests
import yaml

from tests.conftest import LABELS, free_port
from tests.integration.autobuild_support import ASCI, GitRemote, Serve, SlackReceiver, autobuild_config, deliver, server_payload
from tests.integration.services_support import Load, remove_service

TOKEN = uuid.uuid4().hex[:8]
REPO = f"TB/svc-{TOKEN}"
IMAGE = f"asci-test/svc-{TOKEN}"
WEB = f"web_{TOKEN}"
PINNED = f"pinned_{TOKEN}"


def dockerfile(stack, version: str, healthy: bool = True, healthy_after: int = 0) -> str:
    files = f"mkdir /www && echo {version} > /www/version"
    # A slow starter writes /healthz only after HEALTHY_AFTER seconds: a roll that is still waiting.
    start = (f'["sh", "-c", "sleep {healthy_after}; touch /www/healthz; exec httpd -f -p 8080 -h /www"]'
             if healthy_after else '["httpd", "-f", "-p", "8080", "-h", "/www"]')
    if healthy and not healthy_after:
        files += " && touch /www/healthz"
    return f"FROM {stack.config.stack.base_image.tiny_name}\nRUN {files}\nCMD {start}\n"


def service(name: str, port: int, follow: str) -> dict:
    return {"name": name, "repository": IMAGE, "tag": "v1.0.0", "follow": follow,
            "ports": [{"container": 8080, "host": port, "host_ip": "127.0.0.1"}],
            "env": {"GREETING": "hello"}, "group_add": ["4242"], "secrets": [{"name": "token", "value": "not-in-inspect"}],
            "health": {"http_path": "/healthz", "interval": 0.3, "timeout": 2, "wait": 8}}


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory, docker_client):
    root = tmp_path_factory.mktemp("services")
    remote = GitRemote(root / "git")
    slack = SlackReceiver()
    port, web_port, pinned_port = free_port(), free_port(), free_port()
    path = autobuild_config(root / "asci.yaml", config=stack.config, workdir=root / "work", git_root=root / "git",
                            port=port, slack_url=slack.url, repositories=[{"name": REPO, "image": IMAGE}])
    data = yaml.safe_load(path.read_text())
    data["services"] = {"workdir": str(root / "services"), "check_interval": 3600,
                        "definitions": [service(WEB, web_port, "minor"), service(PINNED, pinned_port, "pinned")]}
    path.write_text(yaml.safe_dump(data))
    serve = Serve(path, port, root / "serve.log").start()
    tree = remote.create(REPO, {"Dockerfile": dockerfile(stack, "v1.0.0")})
    state = {"serve": serve, "tree": tree, "slack": slack, "config": path, "root": root,
             "web": f"http://127.0.0.1:{web_port}", "pinned": f"http://127.0.0.1:{pinned_port}"}
    yield state
    state["serve"].stop()
    slack.close()
    for name in (WEB, PINNED):
        remove_service(docker_client, name)


def asci(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ASCI, "-c", str(env["config"]), "services", *args], capture_output=True, text=True,
                          timeout=120)


def release(env, version: str, dockerfile_text: str) -> dict:
    env["tree"].commit({"Dockerfile": dockerfile_text}, f"release {version}")
    commit = env["tree"].tag(version)
    resp = deliver(env["serve"].url, server_payload(REPO, version, commit))
    assert resp.status_code == 202, resp.text
    build = env["serve"].wait(resp.json()["changes"][0]["build_id"])
    assert build["status"] == "succeeded", env["serve"].log(build["id"])
    return build


def history(env, name: str) -> list[dict]:
    out = asci(env, "history", name, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_roll(env, name: str, to_tag: str, timeout: float = 60) -> dict:
    """The finished roll of NAME to TO_TAG, as recorded (bounded poll of the state database)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [r for r in history(env, name) if r["to_tag"] == to_tag and r["result"] != "running"]
        if done:
            return done[0]
        time.sleep(0.3)
    raise AssertionError(f"no finished roll of {name} to {to_tag}: {history(env, name)}")


def serving(url: str) -> str:
    return requests.get(f"{url}/version", timeout=5).text.strip()


def service_containers(docker_client, name: str) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"asci.service={name}"})


def test_deploy_status_and_labels(env, stack, docker_client):
    build = release(env, "v1.0.0", dockerfile(stack, "v1.0.0"))
    out = asci(env, "deploy")
    assert out.returncode == 0, out.stderr
    assert f"{WEB}: v1.0.0 deployed" in out.stdout and f"{PINNED}: v1.0.0 deployed" in out.stdout
    assert serving(env["web"]) == "v1.0.0" and serving(env["pinned"]) == "v1.0.0"
    again = asci(env, "deploy", WEB)
    assert again.returncode == 0 and again.stdout.strip() == f"{WEB}: v1.0.0 running (unchanged)"

    (container,) = service_containers(docker_client, WEB)
    assert container.labels["asci.component"] == WEB and container.labels["asci.service-tag"] == "v1.0.0"
    assert container.labels["asci.service-digest"] == build["digest"]
    assert container.attrs["HostConfig"]["LogConfig"]["Type"] == "journald"
    assert container.attrs["HostConfig"]["GroupAdd"] == ["4242"] and container.attrs["HostConfig"]["Init"] is True
    assert "not-in-inspect" not in json.dumps(container.attrs)
    assert container.exec_run(["cat", "/run/secrets/token"]).output == b"not-in-inspect"
    secret = env["root"] / "services" / WEB / "secrets" / "token"
    assert secret.stat().st_mode & 0o777 == 0o600 and secret.parent.stat().st_mode & 0o777 == 0o700

    status = json.loads(asci(env, "status", "--json").stdout)
    web = next(s for s in status if s["service"] == WEB)
    assert (web["tag"], web["digest"], web["health"]) == ("v1.0.0", build["digest"], "healthy")
    assert asci(env, "deploy", "nosuch").returncode == 2


def test_a_service_on_an_unknown_node_is_refused_in_one_line(env, tmp_path):
    data = yaml.safe_load(env["config"].read_text())
    data["services"]["definitions"][0]["node"] = "elsewhere"
    bad = tmp_path / "asci.yaml"
    bad.write_text(yaml.safe_dump(data))
    out = subprocess.run([ASCI, "-c", str(bad), "services", "status"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        f"asci services: services on nodes not in launcher.nodes: {WEB} (elsewhere) (known: local)"]


def test_a_major_release_is_not_taken_by_a_minor_policy_and_a_patch_rolls_forward(env, stack, docker_client):
    release(env, "v2.0.0", dockerfile(stack, "v2.0.0"))
    build = release(env, "v1.0.1", dockerfile(stack, "v1.0.1"))
    roll = wait_roll(env, WEB, "v1.0.1")
    assert roll["result"] == "succeeded" and roll["from_tag"] == "v1.0.0" and roll["digest"] == build["digest"]
    assert serving(env["web"]) == "v1.0.1"
    assert not [r for r in history(env, WEB) if r["to_tag"] == "v2.0.0"]
    assert serving(env["pinned"]) == "v1.0.0"
    assert [r["to_tag"] for r in history(env, PINNED)] == ["v1.0.0"]
    assert len(service_containers(docker_client, WEB)) == 1


def test_an_unhealthy_tag_keeps_the_old_version_and_tells_slack_once(env, stack, docker_client):
    release(env, "v1.0.2", dockerfile(stack, "v1.0.2", healthy=False))
    roll = wait_roll(env, WEB, "v1.0.2")
    assert roll["result"] == "failed" and "/healthz answered 404" in roll["reason"]
    assert serving(env["web"]) == "v1.0.1"
    messages = env["slack"].wait_for(1)
    assert len(messages) == 1 and "v1.0.2" in messages[0]["text"] and "v1.0.1 keeps serving" in messages[0]["text"]
    # Marked bad: a check of the registry does not try it again.
    assert asci(env, "check").returncode == 0
    assert [r["to_tag"] for r in history(env, WEB)].count("v1.0.2") == 1
    assert len(service_containers(docker_client, WEB)) == 1


def test_sigkill_of_serve_during_a_roll_leaves_exactly_one_healthy_version(env, stack, docker_client):
    # The front outlives asci serve: the version it forwards to keeps answering through kill and restart.
    front = docker_client.containers.get(f"asci-front-{WEB}")
    load = Load(f"{env['web']}/version")
    load.start()
    try:
        env["tree"].commit({"Dockerfile": dockerfile(stack, "v1.1.0", healthy_after=6)}, "slow release")
        commit = env["tree"].tag("v1.1.0")
        deliver(env["serve"].url, server_payload(REPO, "v1.1.0", commit))
        deadline = time.monotonic() + 120
        # The new version is waiting for its health check (behind the front, a version of its own from the start).
        while not any(c.labels.get("asci.service-tag") == "v1.1.0"
                      for c in service_containers(docker_client, WEB)):
            assert time.monotonic() < deadline, "the roll to v1.1.0 never started"
            time.sleep(0.2)
        env["serve"].kill()
        assert [r["result"] for r in history(env, WEB) if r["to_tag"] == "v1.1.0"] == ["running"]

        env["serve"] = Serve(env["config"], env["serve"].port, env["root"] / "serve2.log").start()
        roll = wait_roll(env, WEB, "v1.1.0")
        assert roll["result"] == "interrupted"  # recorded once undone
        (left,) = service_containers(docker_client, WEB)
        assert left.status == "running" and left.labels["asci.service-tag"] == "v1.0.1"
        assert serving(env["web"]) == "v1.0.1"
        load.wait_for("v1.0.1", len(load.answers) + 5)
    finally:
        load.stop()
    assert load.failures == [] and set(load.answers) == {"v1.0.1"}
    front.reload()
    assert front.status == "running" and front.attrs["RestartCount"] == 0
    assert docker_client.containers.get(f"asci-front-{WEB}").id == front.id


def test_a_tag_pushed_by_others_is_found_by_the_registry_check(env, stack, docker_client):
    ref = f"{stack.registry.address}/{IMAGE}:v1.1.1"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile(stack, "v1.1.1").encode()), tag=ref, rm=True,
                               labels=LABELS)
    pushed = docker_client.api.push(ref.rsplit(":", 1)[0], "v1.1.1", stream=True, decode=True,
                                    auth_config=stack.registry.auth_config())
    assert not [line for line in pushed if "error" in line]
    out = asci(env, "check")
    assert out.returncode == 0, out.stderr
    roll = wait_roll(env, WEB, "v1.1.1")
    assert (roll["result"], roll["trigger"], roll["from_tag"]) == ("succeeded", "registry", "v1.0.1")
    assert serving(env["web"]) == "v1.1.1" and serving(env["pinned"]) == "v1.0.0"


def test_rollback_goes_to_the_previous_version_and_that_tag_is_never_taken_again(env, stack):
    out = asci(env, "rollback", WEB)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{WEB}: rolled back from v1.1.1 to v1.0.1"
    assert serving(env["web"]) == "v1.0.1"
    assert history(env, WEB)[0]["result"] == "rolled-back"
    # The tag rolled back from is never taken again; a newer tag it did not try (v1.1.0, whose roll was
    # interrupted) still is.
    assert asci(env, "check").returncode == 0
    assert [r["to_tag"] for r in history(env, WEB)].count("v1.1.1") == 1
    assert history(env, WEB)[0]["to_tag"] == "v1.1.0" and serving(env["web"]) == "v1.1.0"
    assert asci(env, "rollback", PINNED).returncode == 2
