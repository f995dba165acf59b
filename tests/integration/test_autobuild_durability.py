"""Nothing acknowledged is lost, nothing is built twice, and failures are told once."""
from __future__ import annotations

import json
import time
import uuid

import pytest

from registry.client import RegistryClient
from tests.conftest import free_port
from tests.integration.autobuild_support import (GitRemote, Serve, SlackReceiver, autobuild_config, deliver,
                                                 server_payload)
from tests.support.sandbox import Sandbox

TOKEN = uuid.uuid4().hex[:8]


def dockerfile(stack, text: str) -> str:
    return f"FROM {stack.config.stack.base_image.tiny_name}\nRUN echo '{text}' > /message\n"


@pytest.fixture
def make_env(stack, tmp_path):
    serves: list[Serve] = []
    slacks: list[SlackReceiver] = []

    def make(repos: list[dict], *, state_dir=None, registry_port=None, slack: bool = True, retry_base: float = 0.5):
        remote = GitRemote(tmp_path / "git")
        receiver = SlackReceiver() if slack else None
        if receiver:
            slacks.append(receiver)
        port = free_port()
        config = autobuild_config(tmp_path / "asci.yaml", config=stack.config, state_dir=state_dir,
                                  registry_port=registry_port,
                                  workdir=tmp_path / "work", git_root=tmp_path / "git", port=port,
                                  repositories=repos, slack_url=receiver.url if receiver else None,
                                  retry_base=retry_base)
        serve = Serve(config, port, tmp_path / "serve.log")
        serves.append(serve)
        return remote, serve, receiver, config

    yield make
    for s in serves:
        s.stop()
    for r in slacks:
        r.close()


def test_same_delivery_five_times_builds_once(make_env, stack):
    repo = f"TD/dup-{TOKEN}"
    remote, serve, _, _ = make_env([{"name": repo, "image": f"asci-test/dup-{TOKEN}"}])
    serve.start()
    commit = remote.create(repo, {"Dockerfile": dockerfile(stack, "dup")}).tag("v1.0.0")
    payload = server_payload(repo, "v1.0.0", commit)
    answers = [deliver(serve.url, payload, request_id="same-request-id") for _ in range(5)]
    assert [a.status_code for a in answers] == [202, 200, 200, 200, 200]
    assert all(a.json().get("duplicate") for a in answers[1:])
    build_id = answers[0].json()["changes"][0]["build_id"]
    assert {a.json()["changes"][0]["build_id"] for a in answers} == {build_id}
    # Bitbucket retries carry a new request id: same repository + tag + commit still builds once.
    again = deliver(serve.url, payload, request_id="another-request-id")
    assert again.status_code == 202 and again.json()["changes"][0]["build_id"] == build_id
    assert again.json()["changes"][0]["new"] is False
    assert serve.wait(build_id)["status"] == "succeeded"
    assert len(serve.builds(repository=repo)) == 1


def test_receiver_killed_right_after_ack_builds_after_restart(make_env, stack):
    repo = f"TD/crash-{TOKEN}"
    remote, serve, _, _ = make_env([{"name": repo, "image": f"asci-test/crash-{TOKEN}"}])
    serve.start()
    # Slow the first stage down so the kill lands before the build can finish.
    tree = remote.create(repo, {"Dockerfile": dockerfile(stack, "crash") + "RUN sleep 2\n"})
    commit = tree.tag("v3.1.4")
    resp = deliver(serve.url, server_payload(repo, "v3.1.4", commit))
    assert resp.status_code == 202
    serve.kill()  # SIGKILL: no chance to flush or hand anything over
    build_id = resp.json()["changes"][0]["build_id"]
    serve.start()
    build = serve.wait(build_id)
    assert build["status"] == "succeeded", serve.log(build_id)
    digest = RegistryClient(stack.registry).manifest_digest(f"asci-test/crash-{TOKEN}", "v3.1.4")
    assert digest == build["digest"]


def test_failing_dockerfile_step_fails_once_with_one_slack_message(make_env, stack):
    repo = f"TD/broken-{TOKEN}"
    remote, serve, slack, _ = make_env([{"name": repo, "image": f"asci-test/broken-{TOKEN}"}])
    serve.start()
    tree = remote.create(repo, {"Dockerfile": f"FROM {stack.config.stack.base_image.tiny_name}\n"
                                              "RUN echo about to fail && exit 7\n"})
    commit = tree.tag("v0.0.1")
    build_id = deliver(serve.url, server_payload(repo, "v0.0.1", commit)).json()["changes"][0]["build_id"]
    build = serve.wait(build_id)
    assert build["status"] == "failed" and build["attempts"] == 1 and build["failed_stage"] == "build"
    assert "returned a non-zero code: 7" in build["error"]
    log = serve.log(build_id)
    assert "about to fail" in log and "returned a non-zero code: 7" in log
    messages = slack.wait_for(1)
    time.sleep(1.5)  # a second message, if one were coming, would arrive by now
    assert len(slack.messages) == 1
    message = json.dumps(messages[0])
    assert messages[0]["blocks"][0]["text"]["text"] == f"Build failed: {repo} v0.0.1"
    assert "*Failed stage*\\nbuild" in message and "about to fail" in message
    assert f"{serve.url}/builds/{build_id}/log" in message


def test_slack_outage_neither_fails_nor_delays_the_build(make_env, stack):
    repo = f"TD/slackdown-{TOKEN}"
    remote, serve, slack, _ = make_env([{"name": repo, "image": f"asci-test/slackdown-{TOKEN}"}])
    slack.close()  # nothing answers at the webhook address any more
    serve.start()
    tree = remote.create(repo, {"Dockerfile": f"FROM {stack.config.stack.base_image.tiny_name}\nRUN exit 3\n"})
    build_id = deliver(serve.url, server_payload(repo, "v1.0.0", tree.tag("v1.0.0"))).json()["changes"][0]["build_id"]
    failed = serve.wait(build_id)
    assert failed["status"] == "failed"
    tree.commit({"Dockerfile": dockerfile(stack, "fixed")}, "fix")
    fixed = deliver(serve.url, server_payload(repo, "v1.0.1", tree.tag("v1.0.1"))).json()["changes"][0]["build_id"]
    assert serve.wait(fixed)["status"] == "succeeded"
    # slack-sdk retries with backoff before giving up; the builds did not wait for that.
    deadline = time.monotonic() + 60
    while "slack notice not delivered" not in serve.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    gave_up = [json.loads(line) for line in serve.log_path.read_text().splitlines()
               if '"slack notice not delivered"' in line]
    assert gave_up, "the failed notice was never reported"
    assert "ClientConnectorError" in gave_up[0]["error"] or "Connect" in gave_up[0]["error"]


def test_registry_down_during_push_retries_until_it_returns(make_env, stack, tmp_path):
    # Our own registry, so stopping it disturbs nobody else.
    sandbox = Sandbox(stack.config, tmp_path / "side").start()
    try:
        repo = f"TD/regdown-{TOKEN}"
        remote, serve, _, _ = make_env([{"name": repo, "image": f"asci-test/regdown-{TOKEN}"}],
                                       state_dir=sandbox.config.stack.state_dir, registry_port=sandbox.port,
                                       retry_base=1.0)
        commit = remote.create(repo, {"Dockerfile": dockerfile(stack, "patient")}).tag("v2.0.0")
        sandbox.stop()  # the registry is gone before the push
        serve.start()
        build_id = deliver(serve.url, server_payload(repo, "v2.0.0", commit)).json()["changes"][0]["build_id"]
        deadline = time.monotonic() + 60
        while serve.build(build_id)["attempts"] < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        build = serve.build(build_id)
        assert build["attempts"] >= 2 and build["status"] in ("queued", "running")
        assert build["failed_stage"] == "push"
        sandbox.start()  # the registry comes back
        build = serve.wait(build_id)
        assert build["status"] == "succeeded", serve.log(build_id)
        assert "will be retried" in serve.log(build_id)
        assert sandbox.client().manifest_digest(f"asci-test/regdown-{TOKEN}", "v2.0.0") == build["digest"]
    finally:
        sandbox.stop()


def test_git_credentials_never_reach_logs_or_records(stack, tmp_path):
    password = f"pa$$w0rd/{TOKEN}"
    repo = f"TD/creds-{TOKEN}"
    port = free_port()
    config = autobuild_config(
        tmp_path / "asci.yaml", config=stack.config, workdir=tmp_path / "work",
        git_root=tmp_path / "git", port=port, max_attempts=2, retry_base=0.2,
        repositories=[{"name": repo, "image": f"asci-test/creds-{TOKEN}"}],
        # Nothing listens on port 9: the clone fails, and git's error message carries the URL.
        server_host={"clone_url": "http://{username}:{password}@127.0.0.1:9/scm/{project}/{slug}.git",
                     "username": "builder", "password": password})
    serve = Serve(config, port, tmp_path / "serve.log").start()
    try:
        build_id = deliver(serve.url, server_payload(repo, "v1.0.0", "b" * 40)).json()["changes"][0]["build_id"]
        build = serve.wait(build_id)
        log = serve.log(build_id)
    finally:
        serve.stop()
    assert build["status"] == "failed" and build["attempts"] == 2 and build["failed_stage"] == "clone"
    assert "http://builder:***@127.0.0.1:9/scm/TD/" in log
    quoted = password.replace("$", "%24").replace("/", "%2F")
    for text in (json.dumps(build), log, (tmp_path / "serve.log").read_text()):
        assert password not in text and quoted not in text
