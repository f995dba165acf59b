"""Everything autobuild refuses, with its status and reason, and proof that nothing was built or cloned."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port
from tests.integration.autobuild_support import (GitRemote, Serve, autobuild_config, cloud_payload, deliver,
                                                 server_payload, sign)

TOKEN = uuid.uuid4().hex[:8]
REPO = f"TR/guarded-{TOKEN}"
IMAGE = f"asci-test/guarded-{TOKEN}"
PWNED = Path(f"/tmp/asci-pwned-{TOKEN}")


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory):
    root = tmp_path_factory.mktemp("refusals")
    remote = GitRemote(root / "git")
    tree = remote.create(REPO, {"Dockerfile": f"FROM {stack.config.stack.base_image.tiny_name}\n"})
    commit = tree.tag("v1.0.0")
    port = free_port()
    config = autobuild_config(root / "asci.yaml", config=stack.config, workdir=root / "work",
                              git_root=root / "git", port=port, repositories=[{"name": REPO, "image": IMAGE}])
    # A small body limit keeps the oversized-body case cheap.
    text = config.read_text().replace("autobuild:\n", "autobuild:\n  max_body_bytes: 65536\n", 1)
    config.write_text(text)
    serve = Serve(config, port, root / "serve.log").start()
    yield {"serve": serve, "commit": commit, "root": root}
    serve.stop()


def assert_nothing_happened(env, stack):
    serve = env["serve"]
    assert serve.builds(repository=REPO) == []
    clones = env["root"] / "work" / "clones"
    assert not clones.exists() or list(clones.iterdir()) == []
    listed = requests.get(f"{stack.registry.url}/v2/{IMAGE}/tags/list", auth=stack.registry.auth(), timeout=5)
    assert listed.status_code in (401, 404)  # no such repository (or no token for it)
    assert not PWNED.exists()


def test_missing_signature_is_401(env, stack):
    resp = deliver(env["serve"].url, server_payload(REPO, "v1.0.0", env["commit"]), signature="")
    assert resp.status_code == 401
    assert resp.json()["reason"] == "missing X-Hub-Signature header (configure a secret on the webhook)"
    assert_nothing_happened(env, stack)


def test_wrong_secret_is_401(env, stack):
    resp = deliver(env["serve"].url, server_payload(REPO, "v1.0.0", env["commit"]), secret="not-the-secret")
    assert resp.status_code == 401 and resp.json()["reason"] == "signature does not match"
    assert_nothing_happened(env, stack)


def test_signature_over_a_different_body_is_401(env, stack):
    honest = json.dumps(server_payload(REPO, "v1.0.0", env["commit"])).encode()
    forged = json.dumps(server_payload(REPO, "v1.0.1", env["commit"])).encode()
    resp = deliver(env["serve"].url, forged, signature=sign(honest))
    assert resp.status_code == 401 and resp.json()["reason"] == "signature does not match"
    assert_nothing_happened(env, stack)


def test_body_over_the_limit_is_413(env, stack):
    payload = server_payload(REPO, "v1.0.0", env["commit"])
    payload["padding"] = "x" * 70000
    resp = deliver(env["serve"].url, payload)
    assert resp.status_code == 413 and resp.json()["reason"] == "body larger than 65536 bytes"
    assert_nothing_happened(env, stack)


def test_malformed_json_is_400(env, stack):
    resp = deliver(env["serve"].url, b'{"repository": ')
    assert resp.status_code == 400 and resp.json()["reason"].startswith("body is not valid JSON")
    assert_nothing_happened(env, stack)


@pytest.mark.parametrize("mutate,reason", [
    (lambda p: p.pop("changes"), "payload has no changes"),
    (lambda p: p["repository"].pop("project"), "payload has no repository.project.key"),
    (lambda p: p["changes"][0].update(toHash="not-a-hash"), "changes[0].toHash is not a commit hash"),
    (lambda p: p["changes"][0].update(type="MERGE"), "changes[0].type 'MERGE' is not ADD, UPDATE or DELETE"),
])
def test_payload_missing_what_it_needs_is_400(env, stack, mutate, reason):
    payload = server_payload(REPO, "v1.0.0", env["commit"])
    mutate(payload)
    resp = deliver(env["serve"].url, payload)
    assert resp.status_code == 400 and resp.json()["reason"] == reason
    assert_nothing_happened(env, stack)


def test_unknown_event_is_400(env, stack):
    resp = deliver(env["serve"].url, server_payload(REPO, "v1.0.0", env["commit"]), event="pr:opened")
    assert resp.status_code == 400 and "unsupported event 'pr:opened'" in resp.json()["reason"]


def test_unconfigured_repository_answers_like_a_bad_signature(env, stack):
    # Issue 8.2: a 403 naming the repository told which repositories exist.
    resp = deliver(env["serve"].url, server_payload(f"TR/other-{TOKEN}", "v1.0.0", env["commit"]))
    assert resp.status_code == 401
    assert resp.json() == {"status": "refused", "reason": "signature does not match"}
    assert_nothing_happened(env, stack)


def test_clone_link_on_another_host_is_403(env, stack):
    payload = server_payload(REPO, "v1.0.0", env["commit"], host="https://evil.example.com")
    resp = deliver(env["serve"].url, payload)
    assert resp.status_code == 403
    assert resp.json()["reason"].startswith("payload points at https://evil.example.com/scm/")
    assert_nothing_happened(env, stack)


def test_cloud_event_for_a_server_repository_is_403(env, stack):
    resp = deliver(env["serve"].url, cloud_payload(REPO, "v1.0.0", env["commit"]), event="repo:push", cloud=True)
    assert resp.status_code == 403 and "does not send repo:push" in resp.json()["reason"]
    assert_nothing_happened(env, stack)


def test_branch_push_is_ignored_with_reason(env, stack):
    resp = deliver(env["serve"].url, server_payload(REPO, "main", env["commit"], ref_type="BRANCH", change="UPDATE"))
    assert resp.status_code == 202
    assert resp.json()["status"] == "ignored"
    assert resp.json()["changes"][0]["reason"] == "branch push: only tags are built"
    assert_nothing_happened(env, stack)


def test_tag_deletion_is_ignored_with_reason(env, stack):
    resp = deliver(env["serve"].url, server_payload(REPO, "v1.0.0", None, change="DELETE"))
    assert resp.status_code == 202
    assert resp.json()["changes"][0] == {"ref": "v1.0.0", "kind": "tag", "result": "ignored",
                                         "reason": "tag deleted: nothing to build"}
    assert_nothing_happened(env, stack)


@pytest.mark.parametrize("tag,reason", [
    (f"v1;touch {PWNED}", "is not a valid Docker tag"),
    ("../../x", "is not a valid Docker tag"),
    ("v" + "1" * 299, "tag is 300 characters long; Docker allows at most 128"),
    ("v1.0.0-ünïcödé", "contains characters that are not printable ASCII"),
    (f"$(touch {PWNED}-x)", "is not a valid Docker tag"),
    ("-v1.0.0", "is not a valid Docker tag"),
    ("release-candidate", "does not match this repository's tag filter"),
])
def test_hostile_or_filtered_tags_are_refused(env, stack, tag, reason):
    resp = deliver(env["serve"].url, server_payload(REPO, tag, env["commit"]))
    assert resp.status_code == 422, resp.text
    change = resp.json()["changes"][0]
    assert change["result"] == "refused" and reason in change["reason"]
    assert_nothing_happened(env, stack)
    assert not Path(f"{PWNED}-x").exists()  # a path of its own: /tmp/x may be anyone's


def test_ping_needs_a_valid_signature(env):
    body = b'{"test": true}'
    ok = requests.post(f"{env['serve'].url}/hooks/bitbucket", data=body, timeout=5,
                       headers={"X-Event-Key": "diagnostics:ping", "X-Hub-Signature": sign(body)})
    assert ok.status_code == 200 and ok.json() == {"status": "pong"}
    bad = requests.post(f"{env['serve'].url}/hooks/bitbucket", data=body, timeout=5,
                        headers={"X-Event-Key": "diagnostics:ping", "X-Hub-Signature": sign(body, "wrong")})
    assert bad.status_code == 401


def test_refused_deliveries_are_recorded_with_their_reason(env):
    import sqlite3

    db = sqlite3.connect(env["root"] / "work" / "autobuild.db")
    rows = db.execute("SELECT outcome, detail FROM deliveries WHERE repository = ?", (REPO,)).fetchall()
    db.close()
    outcomes = {o for o, _ in rows}
    assert {"ignored", "refused"} <= outcomes
    assert any("not a valid Docker tag" in d for _, d in rows)


def test_a_refused_signature_is_logged_for_the_probing_alert(env):
    # alerts/rules/webhook-probing.yaml counts these lines per client address.
    resp = deliver(env["serve"].url, server_payload(REPO, "v9.9.9", env["commit"]), secret="guessed")
    assert resp.status_code == 401
    lines = [json.loads(line) for line in (env["root"] / "serve.log").read_text().splitlines() if line.startswith("{")]
    refused = [line for line in lines if line["message"] == "webhook refused"]
    assert refused and refused[-1]["component"] == "autobuild" and refused[-1]["level"] == "warning"
    assert {k: refused[-1][k] for k in ("status", "reason", "client_ip")} == {
        "status": 401, "reason": "signature does not match", "client_ip": "127.0.0.1"}
