"""Issue 8, items 1-5: annotated tags, nothing parsed before its signature, build ids, slow clients,
immutable releases. Real git, engine and registry; Slack is the loopback receiver."""
from __future__ import annotations

import json
import selectors
import socket
import time
import uuid

import pytest
import requests

from registry.client import RegistryClient
from tests.conftest import free_port
from tests.integration.autobuild_support import (GitRemote, Serve, SlackReceiver, autobuild_config, deliver,
                                                 server_payload, sign)

TOKEN = uuid.uuid4().hex[:8]
REPO = f"TH/release-{TOKEN}"
IMAGE = f"asci-test/release-{TOKEN}"
MUTABLE = f"TH/mutable-{TOKEN}"
MUTABLE_IMAGE = f"asci-test/mutable-{TOKEN}"
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
MAX_CONNECTIONS = 60


def dockerfile(stack, text: str) -> str:
    return f"FROM {stack.config.stack.base_image.tiny_name}\nRUN echo '{text}' > /message\n"


@pytest.fixture(scope="module")
def env(stack, tmp_path_factory):
    root = tmp_path_factory.mktemp("hardening")
    remote = GitRemote(root / "git")
    slack = SlackReceiver()
    port = free_port()
    config = autobuild_config(
        root / "asci.yaml", config=stack.config, workdir=root / "work", git_root=root / "git", port=port,
        slack_url=slack.url, repositories=[{"name": REPO, "image": IMAGE},
                                           {"name": MUTABLE, "image": MUTABLE_IMAGE, "immutable_tags": False}],
        autobuild={"body_timeout_seconds": BODY_TIMEOUT},
        server={"header_timeout_seconds": HEADER_TIMEOUT, "idle_timeout_seconds": HEADER_TIMEOUT,
                "max_connections": MAX_CONNECTIONS})
    serve = Serve(config, port, root / "serve.log").start()
    yield {"serve": serve, "remote": remote, "slack": slack, "root": root, "trees": {}}
    serve.stop()
    slack.close()


def built(serve, resp) -> dict:
    assert resp.status_code == 202, resp.text
    build = serve.wait(resp.json()["changes"][0]["build_id"])
    assert build["status"] == "succeeded", serve.log(build["id"])
    return build


# --- 1. annotated tags --------------------------------------------------------------------------------


def test_annotated_tag_delivered_by_its_tag_object_builds(env, stack):
    serve, tree = env["serve"], env["remote"].create(REPO, {"Dockerfile": dockerfile(stack, "one")})
    env["trees"][REPO] = tree
    commit = tree.tag("v1.0.0")
    tag_object = tree.tag_object("v1.0.0")
    assert tag_object != commit  # a real annotated tag: the ref names the tag object
    # Through the per-repository URL, as Bitbucket Server is configured per repository.
    build = built(serve, deliver(serve.url, server_payload(REPO, "v1.0.0", tag_object),
                                 path=f"/hooks/bitbucket/{REPO}"))
    assert build["commit_sha"] == commit and build["tag_object"] == tag_object  # both hashes recorded
    assert f"checked out {commit} (annotated tag {tag_object})" in serve.log(build["id"])
    client = RegistryClient(stack.registry)
    labels = client.image_config(client.get_manifest(IMAGE, "v1.0.0"))["config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == commit


# --- 5. releases are immutable ---------------------------------------------------------------------------


def test_retry_of_a_release_is_a_no_op_and_force_never_repushes_another_image(env, stack):
    serve = env["serve"]
    release = serve.builds(repository=REPO, status="succeeded")[0]
    client = RegistryClient(stack.registry)
    digest = client.manifest_digest(IMAGE, "v1.0.0")
    plain = requests.post(f"{serve.url}/builds/{release['id']}/retry", timeout=10)
    assert plain.status_code == 200 and plain.json()["status"] == "unchanged"
    assert len(serve.builds(repository=REPO)) == 1
    forced = requests.post(f"{serve.url}/builds/{release['id']}/retry", params={"force": "1"}, timeout=10)
    assert forced.status_code == 202
    rebuilt = serve.wait(forced.json()["build"])
    # The rebuild makes another image (a new created time); the registry keeps the release as it was.
    assert rebuilt["status"] == "failed" and rebuilt["failed_stage"] == "push"
    assert "releases are immutable" in rebuilt["error"]
    assert client.manifest_digest(IMAGE, "v1.0.0") == digest


def test_moved_release_tag_is_refused_once_and_the_image_stays(env, stack):
    serve, slack = env["serve"], env["slack"]
    client = RegistryClient(stack.registry)
    first = serve.builds(repository=REPO, status="succeeded")
    assert len(first) == 1, "runs after the annotated-tag test, which releases v1.0.0"
    released = client.manifest_digest(IMAGE, "v1.0.0")
    tree = env["trees"][REPO]
    tree.commit({"Dockerfile": dockerfile(stack, "moved")}, "moved")
    tree.move_tag("v1.0.0")
    moved_object = tree.tag_object("v1.0.0")
    before = len(slack.messages)

    resp = deliver(serve.url, server_payload(REPO, "v1.0.0", moved_object), request_id=f"moved-{TOKEN}")
    assert resp.status_code == 422, resp.text
    change = resp.json()["changes"][0]
    assert change["result"] == "refused" and "releases are immutable" in change["reason"]
    assert change["released_commit"] == first[0]["commit_sha"] and change["released_build"] == first[0]["id"]
    # The same delivery again (Bitbucket retries) repeats the answer, and Slack hears of it once.
    again = deliver(serve.url, server_payload(REPO, "v1.0.0", moved_object), request_id=f"moved-{TOKEN}")
    assert again.status_code == 200 and again.json()["duplicate"] is True
    messages = slack.wait_for(before + 1)
    assert len(messages) == before + 1 and "Release tag moved and refused" in messages[-1]["text"]
    assert serve.builds(repository=REPO, status="queued") == []  # nothing queued
    assert client.manifest_digest(IMAGE, "v1.0.0") == released
    import sqlite3
    db = sqlite3.connect(env["root"] / "work" / "autobuild.db")
    (outcome, detail), = db.execute("SELECT outcome, detail FROM deliveries WHERE delivery_id = ?",
                                    (f"moved-{TOKEN}",)).fetchall()
    db.close()
    assert outcome == "refused" and "releases are immutable" in detail


def test_a_mutable_repository_rebuilds_a_moved_tag(env, stack):
    serve, tree = env["serve"], env["remote"].create(MUTABLE, {"Dockerfile": dockerfile(stack, "m1")})
    first = built(serve, deliver(serve.url, server_payload(MUTABLE, "v1.0.0", tree.tag("v1.0.0"))))
    tree.commit({"Dockerfile": dockerfile(stack, "m2")}, "change")
    second = built(serve, deliver(serve.url, server_payload(MUTABLE, "v1.0.0", tree.move_tag("v1.0.0"))))
    assert second["digest"] != first["digest"]
    assert RegistryClient(stack.registry).manifest_digest(MUTABLE_IMAGE, "v1.0.0") == second["digest"]


# --- 2. nothing parsed before its signature; unknown repositories look like bad signatures ---------------


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize("path", ["/hooks/bitbucket", f"/hooks/bitbucket/{REPO}"])
def test_deeply_nested_body_never_answers_500(env, path):
    body = nested(10_000)
    unsigned = deliver(env["serve"].url, body, secret="wrong", path=path)
    assert unsigned.status_code == 401 and unsigned.json() == {"status": "refused", "reason": "signature does not match"}
    signed = deliver(env["serve"].url, body, path=path)
    assert signed.status_code == 400
    assert signed.json()["reason"] == "body is not valid JSON (nested too deeply)"
    assert "Traceback" not in (env["root"] / "serve.log").read_text()


def test_unknown_repository_is_indistinguishable_from_a_bad_signature(env):
    serve = env["serve"]
    bad_signature = deliver(serve.url, server_payload(REPO, "v9.0.0", "a" * 40), secret="wrong")
    answers = [
        bad_signature,
        deliver(serve.url, server_payload(f"TH/nothere-{TOKEN}", "v9.0.0", "a" * 40)),
        deliver(serve.url, server_payload(f"TH/nothere-{TOKEN}", "v9.0.0", "a" * 40), secret="wrong"),
        deliver(serve.url, server_payload(f"TH/nothere-{TOKEN}", "v9.0.0", "a" * 40),
                path=f"/hooks/bitbucket/TH/nothere-{TOKEN}"),
        deliver(serve.url, server_payload(REPO, "v9.0.0", "a" * 40), secret="wrong", path=f"/hooks/bitbucket/{REPO}"),
        # A payload naming another repository than the URL's is not signed by that repository.
        deliver(serve.url, server_payload(MUTABLE, "v9.0.0", "a" * 40), path=f"/hooks/bitbucket/{REPO}"),
    ]
    for resp in answers:
        assert (resp.status_code, resp.content) == (bad_signature.status_code, bad_signature.content)
    assert bad_signature.status_code == 401


def test_ping_on_the_repository_url(env):
    body = b'{"test": true}'
    url = f"{env['serve'].url}/hooks/bitbucket/{REPO}"
    ok = requests.post(url, data=body, timeout=5, headers={"X-Event-Key": "diagnostics:ping",
                                                           "X-Hub-Signature": sign(body)})
    assert ok.status_code == 200 and ok.json() == {"status": "pong"}


# --- 3. build ids ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["9223372036854775808", "9" * 5000, "%D9%A1", "%EF%BC%91", "0", "-1", "1e3",
                                 "%F0%9D%9F%8F", "99999999999999999999999"])
@pytest.mark.parametrize("method,suffix", [("GET", ""), ("GET", "/log"), ("POST", "/retry")])
def test_bad_build_ids_are_404(env, raw, method, suffix):
    resp = requests.request(method, f"{env['serve'].url}/builds/{raw}{suffix}", timeout=10)
    assert resp.status_code == 404, (raw, resp.text[:200])
    assert resp.json() == {"error": "no build with that id"}


def test_largest_id_is_looked_up_and_missing(env):
    resp = requests.get(f"{env['serve'].url}/builds/9223372036854775807", timeout=10)
    assert resp.status_code == 404 and resp.json() == {"error": "no build 9223372036854775807"}


# --- 4. slow clients ---------------------------------------------------------------------------------------


def wait_closed(socks: list[socket.socket], deadline: float) -> dict[socket.socket, bytes]:
    """What each socket received until the server closed it; stops at DEADLINE."""
    sel = selectors.DefaultSelector()
    received = {s: b"" for s in socks}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    open_ = set(socks)
    while open_ and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
            try:
                data = key.fileobj.recv(4096)
            except ConnectionResetError:
                data = b""
            if data:
                received[key.fileobj] += data
            else:
                sel.unregister(key.fileobj)
                open_.discard(key.fileobj)
    sel.close()
    assert not open_, f"{len(open_)} of {len(socks)} connections still open"
    return received


def test_stalled_headers_are_closed_and_connections_capped(env):
    serve = env["serve"]
    socks = []
    started = time.monotonic()
    try:
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", serve.port), timeout=5)
            s.sendall(b"POST /hooks/bitbucket HTTP/1.1\r\nHost: x\r\nX-Event-Key: repo:refs")  # and then nothing
            socks.append(s)
        received = wait_closed(socks, started + HEADER_TIMEOUT + 10)
        elapsed = time.monotonic() - started
    finally:
        for s in socks:
            s.close()
    answers = [r.split(b"\r\n", 1)[0] for r in received.values()]
    assert answers.count(b"HTTP/1.1 408 Request Timeout") <= MAX_CONNECTIONS
    assert answers.count(b"HTTP/1.1 503 Service Unavailable") >= 200 - MAX_CONNECTIONS
    assert elapsed < HEADER_TIMEOUT + 10
    # The service is free again for honest clients.
    assert requests.get(f"{serve.url}/healthz", timeout=5).status_code == 200


def test_slow_body_is_dropped(env):
    serve = env["serve"]
    body = json.dumps(server_payload(REPO, "v3.0.0", "b" * 40)).encode()
    s = socket.create_connection(("127.0.0.1", serve.port), timeout=5)
    started = time.monotonic()
    try:
        s.sendall(b"POST /hooks/bitbucket HTTP/1.1\r\nHost: x\r\nX-Event-Key: repo:refs_changed\r\n"
                  b"X-Hub-Signature: " + sign(body).encode() + b"\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:20])  # the rest never comes
        received = wait_closed([s], started + BODY_TIMEOUT + 10)[s]
    finally:
        s.close()
    assert received.startswith(b"HTTP/1.1 408 ")
    assert b"body did not arrive within 2 seconds" in received
    assert time.monotonic() - started >= BODY_TIMEOUT - 0.1
    assert serve.builds(repository=REPO, status="queued") == []


def test_idle_keep_alive_connection_is_closed(env):
    s = socket.create_connection(("127.0.0.1", env["serve"].port), timeout=5)
    started = time.monotonic()
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive by default in HTTP/1.1; then idle
        received = wait_closed([s], started + HEADER_TIMEOUT + 10)[s]
    finally:
        s.close()
    assert received.startswith(b"HTTP/1.1 200 OK")
    assert time.monotonic() - started >= HEADER_TIMEOUT - 0.5  # closed by the idle timeout, not at once


def test_show_build_waits_for_the_end_instead_of_being_polled(env):
    serve = env["serve"]
    first = serve.builds(repository=MUTABLE)[0]
    forced = requests.post(f"{serve.url}/builds/{first['id']}/retry", params={"force": "1"}, timeout=10).json()
    ended = requests.get(f"{serve.url}/builds/{forced['build']}", params={"wait": "60"}, timeout=90).json()
    assert ended["status"] == "succeeded"  # one request, answered when the build ended
    quick = requests.get(f"{serve.url}/builds/{first['id']}", params={"wait": "60"}, timeout=10)
    assert quick.json()["status"] == "succeeded"  # already ended: answered at once
    assert requests.get(f"{serve.url}/builds/{first['id']}", params={"wait": "x"}, timeout=10).status_code == 400
