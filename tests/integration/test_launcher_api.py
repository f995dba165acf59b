"""The sessions API served for real against the local engine: the whole path, and every bad input
answered clearly with nothing started and nothing left behind."""
from __future__ import annotations

import io
import logging
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from asci_core.launcher.directory import Researcher
from asci_core.launcher.sessions import Launcher
from asci_core.launcher.store import READY, SessionRecord
from asci_core.launcher.vnc_password import PASSWORD_COMMAND
from tests.conftest import LABELS
from tests.integration.launcher_api_support import USER_TOKENS, ServedApi, write_config
from tests.integration.launcher_support import make_data, wait_for

pytestmark = pytest.mark.integration

PASSWORD_IMAGE = f"""FROM asci/tiny:latest
RUN mkdir -p /usr/local/bin && printf '#!/bin/sh\\nread -r p\\nprintf %%s "$p" > /tmp/vnc-password\\n' > {PASSWORD_COMMAND} \\
 && chmod 755 {PASSWORD_COMMAND}
"""


@pytest.fixture
def scope(unique) -> dict[str, str]:
    return {**LABELS, "asci.test.case": unique()}


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "fs"
    make_data(root, ("alice", 5001), ("bob", 5002), ("carol", 5003))
    return root


@pytest.fixture
def serve(stack, tmp_path, data_root, scope):
    """serve(**config overrides) -> a running ServedApi, stopped after the test."""
    started: list[ServedApi] = []

    def make(make_launcher=None, **overrides) -> ServedApi:
        path = write_config(tmp_path, str(stack.config.stack.docker.socket), data_root, **overrides)
        started.append(ServedApi(path, scope, make_launcher).start())
        return started[-1]

    yield make
    for served in started:
        served.stop()


def scoped(docker_client, scope) -> list:
    return docker_client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in scope.items()]})


def nothing_left(api: ServedApi, docker_client, scope) -> None:
    assert scoped(docker_client, scope) == []
    listed = api.call("GET", "/sessions", params={"include_stopped": "true"})
    assert listed.status_code == 200 and listed.json() == {"sessions": []}


@pytest.fixture
def password_image(docker_client, unique):
    tag = f"{unique('img')}:1"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(PASSWORD_IMAGE.encode()), tag=tag, rm=True, labels=LABELS)
    yield tag
    docker_client.images.remove(image.id, force=True)


def test_create_list_show_connect_stop(serve, docker_client, scope, tmp_path, password_image, caplog):
    caplog.set_level(logging.DEBUG)
    api = serve(image=password_image)
    created = api.call("POST", "/sessions", token="alice", json={"environment": "tiny"})
    assert created.status_code == 201, created.text
    session = created.json()
    assert session["user"] == "alice" and session["state"] == READY and session["node"] == "local"
    container = docker_client.containers.get(session["container_id"])
    assert container.labels["asci.session"] == session["id"] and container.status == "running"

    assert [s["id"] for s in api.call("GET", "/sessions", token="alice").json()["sessions"]] == [session["id"]]
    assert api.call("GET", "/sessions", token="bob").json() == {"sessions": []}
    # The admin token sees everyone's, or one user's when it names them.
    assert [s["id"] for s in api.call("GET", "/sessions").json()["sessions"]] == [session["id"]]
    assert [s["id"] for s in api.call("GET", "/sessions", user="alice").json()["sessions"]] == [session["id"]]
    assert api.call("GET", f"/sessions/{session['id']}", token="alice").json()["id"] == session["id"]

    connected = api.call("POST", f"/sessions/{session['id']}/connect", token="alice")
    assert connected.status_code == 200 and connected.headers["Cache-Control"] == "no-store"
    answer = connected.json()
    network = container.attrs["NetworkSettings"]["Networks"]["asci-sessions"]
    assert (answer["session"], answer["node"], answer["address"], answer["port"]) == (
        session["id"], "local", network["IPAddress"], 5901)
    password = answer["password"]
    assert len(password) == 8
    assert container.exec_run(["cat", "/tmp/vnc-password"]).output.decode() == password
    # The proxy's service token may connect on the user's behalf.
    again = api.call("POST", f"/sessions/{session['id']}/connect", token="proxy", user="alice").json()["password"]
    assert again != password
    assert password not in caplog.text and again not in caplog.text
    for path in (tmp_path / "launcher").glob("sessions.sqlite*"):
        assert password.encode() not in path.read_bytes()

    stopped = api.call("DELETE", f"/sessions/{session['id']}", token="alice")
    assert stopped.status_code == 200 and stopped.json()["state"] == "stopped"
    assert scoped(docker_client, scope) == []
    assert api.call("GET", "/sessions", token="alice").json() == {"sessions": []}
    assert api.call("DELETE", f"/sessions/{session['id']}", token="alice").json()["state"] == "stopped"
    refused = api.call("POST", f"/sessions/{session['id']}/connect", token="alice")
    assert refused.status_code == 409 and refused.json()["error"] == "conflict"


def test_environments_and_nodes(serve):
    api = serve()
    mine = api.call("GET", "/environments", token="carol")
    assert mine.status_code == 200 and mine.json() == {"environments": []}  # tiny is for group i03
    names = [e["name"] for e in api.call("GET", "/environments", token="alice").json()["environments"]]
    assert names == ["tiny", "huge", "fat", "gpu"]
    full = api.call("GET", "/environments").json()["environments"][0]
    assert full["allowed_groups"] == ["i03"] and full["memory"] == 64 * 1024 ** 2
    nodes = api.call("GET", "/nodes", token="alice").json()["nodes"]
    assert [(n["name"], n["cpus"], n["healthy"]) for n in nodes] == [("local", 2.0, True)]
    assert api.call("GET", "/nodes/local", token="alice").json()["memory"] == 4 * 1024 ** 3
    missing = api.call("GET", "/nodes/elsewhere")
    assert missing.status_code == 404 and missing.json() == {"error": "node_not_found", "reason": "no such node"}


def test_nodes_show_reserved_and_measured_use(serve, docker_client, scope):
    api = serve(launcher={"usage_interval": 0.5})
    created = api.call("POST", "/sessions", token="alice", json={"environment": "tiny"})
    assert created.status_code == 201, created.text

    def measured() -> dict | None:
        node = api.call("GET", "/nodes/local", token="alice").json()
        # A round taken before the session's container ran may have measured nothing at all (a quiet
        # CI engine runs no other container): wait for one that saw the session.
        return node if node["measured_at"] is not None and node["measured_memory"] > 0 else None
    node = wait_for(measured, timeout=30, what="a measurement of the local node that includes the session")
    # The shared engine runs other containers too: their use is real, so only the relations are fixed.
    assert node["reserved_cpus"] == 0.25 and node["sessions"] == 1
    assert node["measured_cpus"] >= 0 and node["measured_memory"] > 0 and node["measured_at"] <= time.time()
    assert node["used_cpus"] == max(node["reserved_cpus"], node["measured_cpus"])
    assert node["used_memory"] == max(node["reserved_memory"], node["measured_memory"])
    listed = api.call("GET", "/nodes", token="alice").json()["nodes"]
    assert [n["name"] for n in listed] == ["local"] and "measured_cpus" in listed[0]
    assert api.call("DELETE", f"/sessions/{created.json()['id']}", token="alice").status_code == 200
    assert scoped(docker_client, scope) == []


@pytest.mark.parametrize("token,user,environment,status,error,words", [
    ("alice", None, "nope", 404, "unknown_environment", "no environment named 'nope'"),
    ("alice", None, "x" * 5000, 404, "unknown_environment", "no environment named"),
    ("carol", None, "tiny", 403, "not_allowed", "'carol' may not start 'tiny'"),
    ("admin", "mallory", "tiny", 403, "not_allowed", "'mallory' may not start sessions"),
    ("alice", None, "huge", 503, "no_capacity", "local: 0 of 2 CPUs reserved, 64 needed"),
    ("alice", None, "fat", 503, "no_capacity", "local:"),
    ("alice", None, "gpu", 503, "no_capacity", "local:"),
])
def test_refused_creates_start_nothing_and_leave_nothing(serve, docker_client, scope, token, user, environment,
                                                         status, error, words):
    api = serve()
    answer = api.call("POST", "/sessions", token=token, user=user, json={"environment": environment})
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] == error and words in body["reason"] and len(body["reason"]) < 400
    nothing_left(api, docker_client, scope)


def test_more_than_any_node_has_names_each_node_and_why(serve, docker_client, scope):
    api = serve()
    for environment, why in (("fat", "64 GiB needed"), ("gpu", "2 needed")):
        answer = api.call("POST", "/sessions", token="alice", json={"environment": environment}).json()
        assert answer["reason"].count("local:") == 1 and why in answer["reason"], answer
    nothing_left(api, docker_client, scope)


class OddDirectory:
    """A directory (as LDAP could be) that hands out a name no local users file would accept."""

    def lookup(self, name: str) -> Researcher:
        return Researcher("..", 5009, 5009, ("i03",))


def test_a_mount_escaping_its_root_is_refused(serve, docker_client, scope):
    def make_launcher(config) -> Launcher:
        launcher = Launcher.from_config(config, scope)
        launcher.directory = OddDirectory()
        return launcher

    api = serve(make_launcher)
    answer = api.call("POST", "/sessions", user="mallory", json={"environment": "tiny"})
    assert answer.status_code == 403 and "would leave" in answer.json()["reason"], answer.text
    nothing_left(api, docker_client, scope)


def test_the_per_user_limit_answers_429(serve, docker_client, scope):
    api = serve(launcher={"max_sessions_per_user": 1})
    first = api.call("POST", "/sessions", token="alice", json={"environment": "tiny"})
    assert first.status_code == 201
    second = api.call("POST", "/sessions", token="alice", json={"environment": "tiny"})
    assert second.status_code == 429 and second.json() == {
        "error": "limit_reached", "reason": "user 'alice' already has 1 sessions (at most 1)"}
    assert len(scoped(docker_client, scope)) == 1
    assert api.call("DELETE", f"/sessions/{first.json()['id']}", token="alice").status_code == 200
    assert scoped(docker_client, scope) == []


def test_a_burst_of_200_creates_from_one_user(serve, docker_client, scope):
    api = serve(launcher={"max_sessions_per_user": 2})
    with ThreadPoolExecutor(16) as workers:
        answers = list(workers.map(
            lambda _: api.call("POST", "/sessions", token="alice", json={"environment": "tiny"}), range(200)))
    statuses = [a.status_code for a in answers]
    created = [a.json()["id"] for a in answers if a.status_code == 201]
    assert set(statuses) <= {201, 429} and len(created) == 2, sorted(set(statuses))
    throttled = [a for a in answers if a.json().get("error") == "too_many_requests"]
    assert len(throttled) >= 195 and all(int(a.headers["Retry-After"]) >= 1 for a in throttled)
    running = scoped(docker_client, scope)
    assert sorted(c.labels["asci.session"] for c in running) == sorted(created)
    # Another user is not held back by alice's burst.
    assert api.call("POST", "/sessions", token="bob", json={"environment": "tiny"}).status_code == 201
    for session in api.call("GET", "/sessions").json()["sessions"]:
        assert api.call("DELETE", f"/sessions/{session['id']}").status_code == 200
    assert scoped(docker_client, scope) == []
    assert api.call("GET", "/sessions").json() == {"sessions": []}


def test_another_users_session_answers_like_a_missing_one(serve, docker_client, scope):
    api = serve()
    session = api.call("POST", "/sessions", token="alice", json={"environment": "tiny"}).json()
    missing = "0123456789abcdef"
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/connect")):
        theirs = api.call(method, f"/sessions/{session['id']}{suffix}", token="bob")
        nobody = api.call(method, f"/sessions/{missing}{suffix}", token="bob")
        assert theirs.status_code == nobody.status_code == 404
        assert theirs.json() == {"error": "session_not_found", "reason": f"no session {session['id']}"}
        assert nobody.json() == {"error": "session_not_found", "reason": f"no session {missing}"}
        # The admin acting as bob gets bob's view too.
        assert api.call(method, f"/sessions/{session['id']}{suffix}", user="bob").status_code == 404
    assert docker_client.containers.get(session["container_id"]).status == "running"
    assert api.call("GET", f"/sessions/{session['id']}", token="alice").json()["state"] == READY


@pytest.mark.parametrize("session_id", [
    "0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0", "..%2F..%2Fetc", "%00", "x" * 3000,
    "0123456789abcdeg", "'%20OR%201=1",
])
def test_malformed_session_ids_answer_404_without_a_lookup(serve, docker_client, scope, session_id):
    api = serve()
    for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/connect")):
        answer = api.call(method, f"/sessions/{session_id}{suffix}", token="alice")
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"] in ("session_not_found", "not_found")
    nothing_left(api, docker_client, scope)


@pytest.mark.parametrize("body,headers,status,words", [
    (b"{", {}, 400, "not valid JSON"),
    (b"\xff\xfe", {}, 400, "not valid JSON"),
    (b"[" * 15000 + b"]" * 15000, {}, 413, "larger than 16384 bytes"),
    (b"[" * 8000 + b"]" * 8000, {}, 400, "not valid JSON"),
    (b'{"a":' * 2000 + b"1" + b"}" * 2000, {}, 400, "not valid JSON"),
    (b'["tiny"]', {}, 400, "must be a JSON object"),
    (b'{"environment": "tiny", "user": "bob"}', {}, 400, "unknown field 'user'"),
    (b'{"environment": 7}', {}, 400, "environment: expected the name"),
    (b"{}", {}, 400, "environment: expected the name"),
    (b'{"environment": "tiny"}', {"X-Asci-User": "Robert'); DROP"}, 400, "X-Asci-User: expected a user name"),
    (b" " * 20000, {}, 413, "larger than 16384 bytes"),
])
def test_malformed_bodies_are_refused_with_nothing_started(serve, docker_client, scope, body, headers, status, words):
    api = serve()
    answer = api.call("POST", "/sessions", token="admin", user=headers.pop("X-Asci-User", "alice"), data=body,
                      headers={"Content-Type": "application/json", **headers})
    assert answer.status_code == status, answer.text
    assert words in answer.json()["reason"]
    nothing_left(api, docker_client, scope)


def test_a_body_sent_in_chunks_past_the_limit_is_cut_off(serve, docker_client, scope):
    api = serve()

    def chunks():
        for _ in range(100):
            yield b"x" * 1000

    answer = api.call("POST", "/sessions", token="alice", data=chunks())  # chunked: no Content-Length to trust
    assert answer.status_code == 413
    nothing_left(api, docker_client, scope)


def test_every_call_needs_a_token(serve, docker_client, scope):
    api = serve(api={"auth_failures_burst": 1000})  # the throttle has a test of its own
    calls = [("GET", "/environments"), ("GET", "/sessions"), ("POST", "/sessions"), ("GET", "/sessions/0123456789abcdef"),
             ("DELETE", "/sessions/0123456789abcdef"), ("POST", "/sessions/0123456789abcdef/connect"),
             ("POST", "/sessions/0123456789abcdef/activity"), ("GET", "/nodes"), ("GET", "/nodes/local"), ("GET", "/no/such/path")]
    for method, path in calls:
        for headers in ({}, {"Authorization": "Bearer wrong-" + "x" * 40}, {"Authorization": "Basic YWxpY2U6eA=="},
                        {"Authorization": f"Bearer {USER_TOKENS['alice']}x"}, {"Authorization": "Bearer"}):
            answer = api.call(method, path, token=None, headers=headers, json={"environment": "tiny"})
            assert answer.status_code == 401, (method, path, headers)
            assert answer.json() == {"error": "unauthorized", "reason": "a valid bearer token is required"}
            assert answer.headers["WWW-Authenticate"] == 'Bearer realm="asci"'
    nothing_left(api, docker_client, scope)


def test_a_user_token_acts_only_as_its_user(serve, docker_client, scope):
    api = serve()
    answer = api.call("POST", "/sessions", token="alice", user="bob", json={"environment": "tiny"})
    assert answer.status_code == 403 and answer.json() == {
        "error": "not_allowed", "reason": "this token acts only as 'alice'"}
    assert api.call("GET", "/sessions", token="alice", user="bob").status_code == 403
    assert api.call("GET", "/sessions", token="alice", user="alice").status_code == 200
    no_user = api.call("POST", "/sessions", json={"environment": "tiny"})
    assert no_user.status_code == 400 and "X-Asci-User" in no_user.json()["reason"]
    nothing_left(api, docker_client, scope)


def test_failed_authentications_are_throttled_per_address(serve, docker_client, scope):
    api = serve(api={"auth_failures_burst": 3, "auth_failures_per_minute": 1})
    assert [api.call("GET", "/sessions", token="wrong-" + "x" * 40).status_code for _ in range(3)] == [401] * 3
    throttled = api.call("GET", "/sessions", token="alice")  # even a good token waits: no guessing in between
    assert throttled.status_code == 429 and throttled.json()["error"] == "too_many_failures"
    assert int(throttled.headers["Retry-After"]) >= 1


def test_the_admin_token_file_is_private(serve, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    api = serve()
    path = tmp_path / "launcher" / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    token = path.read_text().strip()
    assert len(token) >= 32 and token not in caplog.text
    assert api.call("GET", "/sessions").status_code == 200


def test_unknown_paths_and_methods_answer_json(serve):
    api = serve()
    assert api.call("GET", "/nothing").json() == {"error": "not_found", "reason": "Not Found"}
    wrong = api.call("PUT", "/sessions")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    assert api.call("GET", "/sessions", params={"state": "all"}).json()["reason"].startswith("unknown parameter")
    assert api.call("GET", "/sessions", params={"limit": "0"}).status_code == 400


def test_start_reconciles_and_culls_on_a_timer(stack, tmp_path, data_root, scope, docker_client, caplog):
    caplog.set_level(logging.INFO)
    path = write_config(tmp_path, str(stack.config.stack.docker.socket), data_root, api={"cull_interval": 0.2})
    # A record whose container vanished while the service was down: reconcile closes it at start.
    served = ServedApi(path, scope)
    launcher = Launcher.from_config(served.config, scope)
    now = time.time()
    launcher.store.insert(SessionRecord("00000000000000aa", "alice", "tiny", "local", "f" * 64, READY, 0.25,
                                        64 * 1024 ** 2, 0, (), now, now, now, ""))
    launcher.close()
    served.start()
    try:
        assert served.call("GET", "/sessions/00000000000000aa").json()["reason"] == "container vanished"
        started = [r for r in caplog.records if r.getMessage() == "reconciled at start"]
        assert len(started) == 1 and started[0].fields["closed"] == 1
        assert any(r.getMessage() == "culling started" for r in caplog.records)
        session = served.call("POST", "/sessions", token="alice", json={"environment": "tiny"}).json()
        # Make it look idle for longer than the environment allows: the next pass stops it.
        served.launcher.touch(session["id"], when=time.time() - 7200)
        wait_for(lambda: served.call("GET", f"/sessions/{session['id']}").json()["state"] == "stopped",
                 what="the culler stopping an idle session")
        assert served.call("GET", f"/sessions/{session['id']}").json()["reason"] == "idle for 3600 s"
        assert any(r.getMessage() == "culled" and r.fields["stopped"] == 1 for r in caplog.records)
        assert scoped(docker_client, scope) == []
    finally:
        served.stop()
    assert any(r.getMessage() == "culling stopped" for r in caplog.records)


class UntouchableStore:
    """Stands in for the session store where a test must show the store is not asked."""

    def __getattr__(self, name):
        raise AssertionError(f"the session store was asked ({name})")


def test_malformed_ids_never_reach_the_store(serve, caplog):
    api = serve()
    real_store, api.launcher.store = api.launcher.store, UntouchableStore()
    try:
        for session_id in ("..", "0123456789ABCDEF", "x" * 200, "0123456789abcdef0"):
            assert api.call("GET", f"/sessions/{session_id}", token="alice").status_code == 404
        # The check can fail: a well-formed id does go to the store, which here is a failure (500, logged).
        broken = api.call("GET", "/sessions/0123456789abcdef", token="alice")
        assert broken.status_code == 500 and broken.json()["error"] == "internal_error"
        assert "the session store was asked" not in broken.text
        assert any(r.getMessage() == "API call failed" for r in caplog.records)
    finally:
        api.launcher.store = real_store


def test_the_proxy_reports_activity_and_the_idle_clock_restarts(serve, docker_client, scope):
    api = serve()
    session = api.call("POST", "/sessions", token="alice", json={"environment": "tiny"}).json()
    api.launcher.touch(session["id"], when=time.time() - 7200)
    assert api.call("POST", f"/sessions/{session['id']}/activity", token="alice").status_code == 403
    assert api.call("POST", f"/sessions/{session['id']}/activity", token="proxy", user="bob").status_code == 404
    before = time.time()
    assert api.call("POST", f"/sessions/{session['id']}/activity", token="proxy", user="alice").status_code == 204
    assert api.call("GET", f"/sessions/{session['id']}").json()["last_activity"] >= before
    assert api.launcher.cull() == []  # no longer idle
    assert api.call("DELETE", f"/sessions/{session['id']}").status_code == 200
    assert scoped(docker_client, scope) == []
