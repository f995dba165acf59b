"""A session is ready when its desktop listens: one whose entry point refuses to start fails create with
the entry point's own line and leaves nothing behind; one that dies later is closed by reconcile with its
exit code."""
from __future__ import annotations

from dataclasses import replace

import pytest

from asci_core.launcher.errors import Conflict, StartFailed
from asci_core.launcher.readiness import port_answers
from asci_core.launcher.settings import DEFAULT_ENVIRONMENT, with_registry
from asci_core.launcher.store import READY, STARTING, STOPPED
from tests.conftest import LABELS
from tests.integration import images_support
from tests.integration.launcher_api_support import ServedApi, write_config
from tests.integration.launcher_support import build_launcher, make_data, tiny_environment, wait_for

pytestmark = pytest.mark.integration

# `nogroup` is the image's own group (gid 65534): the entry point refuses to make it again under 7005.
CLASHING_USERS = ("users:\n  - {name: alice, uid: 5001, gid: 5001, groups: [i03, nogroup]}\n"
                  "groups: {i03: 7003, nogroup: 7005}\n")
CLASH_LINE = "asci-session: ASCI_GROUPS group 'nogroup' already exists in the image with gid 65534"


@pytest.fixture
def scope(unique) -> dict[str, str]:
    return {**LABELS, "asci.test.case": unique()}


@pytest.fixture
def desktop(stack, docker_client) -> str:
    return images_support.by_content(stack, docker_client, "desktop-base")


def containers(docker_client, scope) -> list:
    return docker_client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in scope.items()]})


def test_a_desktop_whose_entry_point_refuses_fails_create_with_its_line(stack, docker_client, scope, tmp_path,
                                                                         desktop):
    (tmp_path / "users.yaml").write_text(CLASHING_USERS)
    env = replace(with_registry(DEFAULT_ENVIRONMENT, stack.registry.address), cpus=1.0, image=desktop)
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [env])
    try:
        with pytest.raises(StartFailed) as failed:
            launcher.create("alice", env.name)
        assert str(failed.value).endswith(f"exited with code 64: {CLASH_LINE}"), str(failed.value)
        assert "\n" not in str(failed.value) and failed.value.status == 503
        [record] = launcher.list(include_stopped=True)
        assert record.state == STOPPED and record.reason == f"exited with code 64: {CLASH_LINE}"
        assert containers(docker_client, scope) == []
        assert launcher.list() == []  # nothing counts against alice's limit
    finally:
        launcher.close()


def test_the_api_answers_503_with_the_entry_points_line(stack, docker_client, scope, tmp_path, desktop):
    data_root = tmp_path / "fs"
    make_data(data_root, ("alice", 5001))
    path = write_config(tmp_path, str(stack.config.stack.docker.socket), data_root,
                        launcher={"environments": [{"name": "desktop-base", "image": desktop, "cpus": 1,
                                                    "memory": "2g", "account": "image"}]})
    (tmp_path / "users.yaml").write_text(CLASHING_USERS)
    api = ServedApi(path, scope).start()
    try:
        created = api.call("POST", "/sessions", token="alice", json={"environment": "desktop-base"})
        assert created.status_code == 503, created.text
        assert created.json()["error"] == "start_failed"
        assert created.json()["reason"].endswith(f"exited with code 64: {CLASH_LINE}")
        [stopped] = api.call("GET", "/sessions?include_stopped=true", token="alice").json()["sessions"]
        assert stopped["state"] == STOPPED and stopped["reason"] == f"exited with code 64: {CLASH_LINE}"
        assert containers(docker_client, scope) == []
    finally:
        api.stop()


def test_a_desktop_is_ready_only_once_its_vnc_port_answers(stack, docker_client, scope, tmp_path, desktop):
    env = replace(with_registry(DEFAULT_ENVIRONMENT, stack.registry.address), cpus=1.0, image=desktop)
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [env])
    try:
        record = launcher.create("alice", env.name)
        assert record.state == READY
        connection = launcher.connect(record.id)
        assert port_answers(connection.address, connection.port)
        launcher.stop(record.id)
    finally:
        launcher.close()


def test_a_session_that_dies_later_is_closed_by_reconcile_with_its_exit_code(stack, docker_client, scope, tmp_path):
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001))
    # Ends when told to (a file it waits for), so create sees it running and reconcile sees it exited.
    command = ["sh", "-c", "while [ ! -e /tmp/die ]; do sleep 0.1; done; echo 'out of licences' >&2; exit 3"]
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope,
                              [tiny_environment(data, command=command)])
    try:
        record = launcher.create("alice", "tiny")
        assert record.state == READY
        container = docker_client.containers.get(record.container_id)
        container.exec_run(["touch", "/tmp/die"])
        assert container.wait(timeout=30)["StatusCode"] == 3
        report = launcher.reconcile()
        assert report.closed == [record.id] and report.removed == [record.container_id]
        closed = launcher.show(record.id)
        assert closed.state == STOPPED and closed.reason == "exited with code 3: out of licences"
        assert containers(docker_client, scope) == []
    finally:
        launcher.close()


def test_a_session_still_silent_at_the_deadline_answers_starting_and_turns_ready_when_it_listens(
        stack, docker_client, scope, tmp_path):
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001))
    # Listens on the VNC port only once told to: create's wait (0.5 s) passes while it is silent.
    command = ["sh", "-c", "while [ ! -e /tmp/listen ]; do sleep 0.1; done; "
                           "while true; do echo 'RFB 003.008' | nc -l -p 5901; done"]
    env = tiny_environment(data, command=command, ready_check="vnc")
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [env], ready_timeout=0.5)
    try:
        record = launcher.create("alice", "tiny")
        assert record.state == STARTING and record.container_id
        with pytest.raises(Conflict, match="is starting, not ready"):
            launcher.connect(record.id)
        assert launcher.reconcile().recovered == []  # running, but not listening: still starting
        assert launcher.show(record.id).state == STARTING
        docker_client.containers.get(record.container_id).exec_run(["touch", "/tmp/listen"])
        wait_for(lambda: launcher.show(record.id).state == READY, timeout=30, what="the session ready")
        launcher.stop(record.id)
    finally:
        launcher.close()


def test_a_session_that_ends_while_still_starting_is_closed_in_the_background(stack, docker_client, scope, tmp_path):
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001))
    command = ["sh", "-c", "while [ ! -e /tmp/die ]; do sleep 0.1; done; echo 'no display' >&2; exit 5"]
    env = tiny_environment(data, command=command, ready_check="vnc")
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [env], ready_timeout=0.5)
    try:
        record = launcher.create("alice", "tiny")
        assert record.state == STARTING
        docker_client.containers.get(record.container_id).exec_run(["touch", "/tmp/die"])
        wait_for(lambda: launcher.show(record.id).state == STOPPED, timeout=30, what="the session closed")
        assert launcher.show(record.id).reason == "exited with code 5: no display"
        wait_for(lambda: containers(docker_client, scope) == [], timeout=10, what="its container removed")
    finally:
        launcher.close()


def test_a_session_that_never_listens_is_culled_by_its_idle_clock(stack, docker_client, scope, tmp_path):
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001))
    env = tiny_environment(data, ready_check="vnc", idle_timeout=600.0)
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [env], ready_timeout=0.2)
    try:
        record = launcher.create("alice", "tiny")
        assert record.state == STARTING
        assert launcher.cull(now=record.created_at + 100) == []
        assert launcher.cull(now=record.created_at + 600) == [(record.id, "idle for 600 s")]
        assert launcher.show(record.id).state == STOPPED
        assert containers(docker_client, scope) == []
    finally:
        launcher.close()
