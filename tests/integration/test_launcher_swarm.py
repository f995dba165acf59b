"""The Swarm backend on a real 3-node Swarm (one network namespace and one dockerd per node).

A session is a service: Swarm runs it on a node matching its constraint, with ASCI's
reservations and limits; what Swarm cannot place comes back with Swarm's own reason
and leaves nothing behind; stop removes the service and its container.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

import pytest

from asci_core.launcher.errors import NoCapacity
from asci_core.launcher.directory import LocalUsersFile
from asci_core.launcher.settings import LauncherSettings, NodeSettings, SwarmSettings
from asci_core.launcher.sessions import ReconcileReport
from asci_core.launcher.store import READY, STOPPED, SessionStore
from asci_core.launcher.swarm import SwarmLauncher
from tests.conftest import LABELS
from tests.integration.launcher_nodes import EngineNode, NodeCluster
from tests.integration.test_launcher_connect import DOCKERFILE
from tests.integration.launcher_support import TINY, USERS, make_data, tiny_environment, wait_for

pytestmark = pytest.mark.integration
NODE_LABELS = {"swarm1": {"beamline": "i03"}, "swarm2": {"beamline": "i04"}, "swarm3": {"beamline": "i04"}}


@pytest.fixture(scope="session")
def swarm(docker_client) -> Iterator[NodeCluster]:
    with NodeCluster(3, "swarm") as cluster:
        cluster.form_swarm(NODE_LABELS)
        cluster.load_image(docker_client, TINY)
        print(f"\nswarm nodes: {cluster.timings}")
        yield cluster
    print(f"\nswarm nodes torn down: {cluster.timings}")


@pytest.fixture
def password_image(swarm, docker_client, unique) -> Iterator[str]:
    """The connect test's stand-in image (a password command writing what it reads), in every Swarm node."""
    tag = f"{unique('img')}:1"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(DOCKERFILE.encode()), tag=tag, rm=True, labels=LABELS)
    try:
        swarm.load_image(docker_client, tag)
        yield tag
    finally:
        docker_client.images.remove(image.id, force=True)


@pytest.fixture
def scope(unique) -> dict[str, str]:
    return {**LABELS, "asci.test.case": unique()}


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "fs"
    make_data(root, ("alice", 5001), ("bob", 5002))
    return root


def build(swarm: NodeCluster, tmp_path: Path, scope, environments, memory: str = "4g",
          manager_timeout: float = 5.0) -> SwarmLauncher:
    manager = swarm.nodes[0]
    # Swarm reports the whole machine for each node; ASCI admits against this configured share.
    nodes = [NodeSettings(name=n.name, url=n.url, cpus=2.0, memory=memory, gpus=0, timeout=5.0) for n in swarm]
    settings = LauncherSettings(backend="swarm", swarm=SwarmSettings(manager=manager.url, timeout=manager_timeout,
                                                                     start_timeout=30.0),
                                environments=environments, nodes=nodes, stop_timeout=2, max_sessions_per_user=4)
    (tmp_path / "users.yaml").write_text(USERS)
    return SwarmLauncher(settings, SessionStore(tmp_path / "sessions.sqlite"), LocalUsersFile(tmp_path / "users.yaml"),
                         scope)


def services(swarm: NodeCluster, scope) -> list[dict]:
    client = swarm.nodes[0].client()
    try:
        return client.api.services(filters={"label": [f"{k}={v}" for k, v in scope.items()]})
    finally:
        client.close()


def containers_on(node: EngineNode, scope) -> list[str]:
    """Ids of the containers within SCOPE on NODE (one listing: a container being removed meanwhile
    is not looked up)."""
    client = node.client()
    try:
        found = client.api.containers(all=True, filters={"label": [f"{k}={v}" for k, v in scope.items()]})
        return [c["Id"] for c in found]
    finally:
        client.close()


def test_a_session_service_runs_on_a_node_matching_its_constraint_and_stop_removes_it(swarm, scope, tmp_path,
                                                                                      data_root, password_image,
                                                                                      request):
    env = tiny_environment(data_root, node_labels={"beamline": "i03"}, image=password_image)
    launcher = build(swarm, tmp_path, scope, [env])
    try:
        record = launcher.create("alice", "tiny")
        assert record.state == READY and record.node == "swarm1"
        (service,) = services(swarm, scope)
        assert service["ID"] == record.container_id
        task = service["Spec"]["TaskTemplate"]
        assert task["Placement"]["Constraints"] == ["node.labels.beamline==i03"]
        assert task["RestartPolicy"]["Condition"] == "none"
        assert task["Resources"]["Reservations"] == {"NanoCPUs": 250_000_000, "MemoryBytes": 64 * 1024 ** 2}
        assert "Ports" not in (service.get("Endpoint") or {}).get("Spec", {})
        (container_id,) = containers_on(swarm.nodes[0], scope)
        assert containers_on(swarm.nodes[1], scope) == [] and containers_on(swarm.nodes[2], scope) == []
        node_client = swarm.nodes[0].client()
        request.addfinalizer(node_client.close)
        container = node_client.containers.get(container_id)
        host = container.attrs["HostConfig"]
        assert host["NanoCpus"] == 250_000_000 and host["Memory"] == 64 * 1024 ** 2 and host["PidsLimit"] == 64
        assert host["CapDrop"] == ["ALL"] and host["Init"] is True and host["LogConfig"]["Type"] == "journald"
        assert container.attrs["Config"]["User"] == "5001:5001"
        assert container.labels["asci.session"] == record.id and container.labels["asci.user"] == "alice"
        code, out = container.exec_run(["id", "-u"])
        assert out.decode().strip() == "5001"
        assert {n.name: n.sessions for n in launcher.nodes()} == {"swarm1": 1, "swarm2": 0, "swarm3": 0}

        connection = launcher.connect(record.id)
        assert connection.node == "swarm1" and connection.port == 5901
        networks = container.attrs["NetworkSettings"]["Networks"]
        assert connection.address in {n["IPAddress"] for n in networks.values()}
        assert container.exec_run(["cat", "/tmp/vnc-password"]).output.decode() == connection.password.reveal()

        assert launcher.stop(record.id).state == STOPPED
        assert services(swarm, scope) == []
        wait_for(lambda: containers_on(swarm.nodes[0], scope) == [], what="the task's container to go")
    finally:
        launcher.close()


def test_an_unplaceable_session_reports_swarms_reason_and_leaves_nothing(swarm, scope, tmp_path, data_root):
    # ASCI's admission is told each node has 256g, so it passes; Swarm sees the real machine and cannot place it.
    env = tiny_environment(data_root, memory="200g", node_labels={"beamline": "i04"})
    launcher = build(swarm, tmp_path, scope, [env], memory="256g")
    try:
        # Swarm checks resources before constraints, so all three nodes are named.
        with pytest.raises(NoCapacity, match=r"^Swarm cannot place the session: no suitable node "
                                             r"\(insufficient resources on 3 nodes\)$") as info:
            launcher.create("alice", "tiny")
        assert "\n" not in str(info.value)
        assert services(swarm, scope) == []
        assert all(containers_on(n, scope) == [] for n in swarm)
        (record,) = launcher.list(user="alice", include_stopped=True)
        assert record.state == STOPPED and "insufficient resources" in record.reason
    finally:
        launcher.close()


def test_admission_refuses_before_swarm_with_each_node_and_why(swarm, scope, tmp_path, data_root):
    env = tiny_environment(data_root, cpus=3.0)
    launcher = build(swarm, tmp_path, scope, [env])
    try:
        with pytest.raises(NoCapacity) as info:
            launcher.create("alice", "tiny")
        for name in ("swarm1", "swarm2", "swarm3"):
            assert f"{name}: 0 of 2 CPUs reserved, 3 needed" in str(info.value)
        assert services(swarm, scope) == []
    finally:
        launcher.close()


def test_reconcile_closes_a_session_whose_service_vanished_and_adopts_a_running_one(swarm, scope, tmp_path,
                                                                                    data_root):
    launcher = build(swarm, tmp_path, scope, [tiny_environment(data_root)])
    try:
        gone = launcher.create("alice", "tiny")
        kept = launcher.create("bob", "tiny")
        assert launcher.reconcile().closed == []
        client = swarm.nodes[0].client()
        try:
            client.api.remove_service(gone.container_id)
        finally:
            client.close()
        # A record lost (e.g. a restored database): the running service is adopted.
        launcher.store._write("DELETE FROM sessions WHERE id = ?", (kept.id,))
        report = launcher.reconcile()
        assert report.closed == [gone.id] and launcher.show(gone.id).reason == "service vanished"
        assert report.adopted == [kept.id] and launcher.show(kept.id).state == READY
        assert launcher.show(kept.id).node == kept.node and launcher.show(kept.id).container_id == kept.container_id
        assert launcher.reconcile() == ReconcileReport()  # agreement reached
        launcher.stop(kept.id)
        assert services(swarm, scope) == []
    finally:
        launcher.close()


def test_a_manager_that_stops_answering_loses_the_sessions_until_it_answers(swarm, scope, tmp_path, data_root):
    launcher = build(swarm, tmp_path, scope, [tiny_environment(data_root)], manager_timeout=2.0)
    manager = swarm.nodes[0]
    try:
        record = launcher.create("alice", "tiny")
        manager.freeze()
        try:
            report = launcher.reconcile()
            assert report.lost == [record.id]
            assert launcher.show(record.id).reason == "the Swarm manager is not answering: timed out"
            with pytest.raises(NoCapacity, match="swarm-manager: down"):
                launcher.create("bob", "tiny")
            assert launcher.list(user="bob", include_stopped=True) == []  # refused before anything was recorded
        finally:
            manager.thaw()
        report = launcher.reconcile()
        assert report.recovered == [record.id] and launcher.show(record.id).state == READY
        launcher.stop(record.id)
        assert services(swarm, scope) == []
    finally:
        launcher.close()
