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
