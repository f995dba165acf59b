"""Sessions on several real Docker engines (one network namespace and one dockerd per node).

The launcher drives each engine directly: placement chooses the node, the session runs
there and nowhere else; a node whose engine hangs or dies is marked down, its sessions
are reported lost and new sessions go elsewhere; when it answers again its sessions are
ready again.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from asci_core.launcher.settings import NodeSettings
from asci_core.launcher.store import LOST, READY, STOPPED
from tests.conftest import LABELS
from tests.integration.launcher_nodes import NodeCluster, EngineNode
from tests.integration.launcher_support import TINY, build_launcher, make_data, tiny_environment

pytestmark = pytest.mark.integration
# Short: a hung engine is noticed within this many seconds.
NODE_TIMEOUT = 2.0


@pytest.fixture(scope="session")
def engine_nodes(docker_client) -> Iterator[NodeCluster]:
    with NodeCluster(2, "node", live_restore=True) as cluster:
        cluster.load_image(docker_client, TINY)
        print(f"\nengine nodes: {cluster.timings}")
        yield cluster
    print(f"\nengine nodes torn down: {cluster.timings}")


@pytest.fixture
def scope(unique) -> dict[str, str]:
    return {**LABELS, "asci.test.case": unique()}


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "fs"
    make_data(root, ("alice", 5001), ("bob", 5002))
    return root


def node_settings(node: EngineNode, **extra) -> NodeSettings:
    return NodeSettings(name=node.name, url=node.url, cpus=2.0, memory="4g", gpus=0, timeout=NODE_TIMEOUT, **extra)


def containers_on(node: EngineNode, scope: dict[str, str]) -> dict[str, str]:
    """Session containers within SCOPE on NODE's engine: {id: status}."""
    client = node.client()
    try:
        found = client.api.containers(all=True, filters={"label": [f"{k}={v}" for k, v in scope.items()]})
        return {c["Id"]: c["State"] for c in found}
    finally:
        client.close()


def launcher_on(engine_nodes, tmp_path, scope, data_root, **settings):
    return build_launcher(tmp_path, "", scope, [tiny_environment(data_root)],
                          nodes=[node_settings(n) for n in engine_nodes], max_sessions_per_user=4, **settings)


def test_spread_puts_sessions_on_different_nodes_and_each_runs_where_it_was_placed(engine_nodes, scope, tmp_path,
                                                                                    data_root):
    first_node, second_node = engine_nodes.nodes
    launcher = launcher_on(engine_nodes, tmp_path, scope, data_root, placement="spread")
    try:
        first = launcher.create("alice", "tiny")
        second = launcher.create("bob", "tiny")
        assert (first.node, second.node) == (first_node.name, second_node.name)
        assert containers_on(first_node, scope) == {first.container_id: "running"}
        assert containers_on(second_node, scope) == {second.container_id: "running"}
        loads = {n.name: (n.sessions, n.reserved_cpus) for n in launcher.nodes()}
        assert loads == {first_node.name: (1, 0.25), second_node.name: (1, 0.25)}
        for record in (first, second):
            assert launcher.stop(record.id).state == STOPPED
        assert containers_on(first_node, scope) == {} and containers_on(second_node, scope) == {}
    finally:
        launcher.close()


def test_pack_fills_one_node_first(engine_nodes, scope, tmp_path, data_root):
    first_node, second_node = engine_nodes.nodes
    launcher = launcher_on(engine_nodes, tmp_path, scope, data_root, placement="pack")
    try:
        records = [launcher.create(user, "tiny") for user in ("alice", "bob", "alice")]
        assert {r.node for r in records} == {first_node.name}
        assert set(containers_on(first_node, scope)) == {r.container_id for r in records}
        assert containers_on(second_node, scope) == {}
        for record in records:
            launcher.stop(record.id)
        assert containers_on(first_node, scope) == {}
    finally:
        launcher.close()


def test_a_hung_node_is_marked_down_its_sessions_lost_and_it_comes_back(engine_nodes, scope, tmp_path, data_root):
    first_node, second_node = engine_nodes.nodes
    launcher = launcher_on(engine_nodes, tmp_path, scope, data_root, placement="pack")
    try:
        kept = launcher.create("alice", "tiny")
        assert kept.node == first_node.name
        first_node.freeze()
        try:
            report = launcher.reconcile()
            assert report.lost == [kept.id]
            record = launcher.show(kept.id)
            assert record.state == LOST and "timed out" in record.reason
            nodes = {n.name: n for n in launcher.nodes()}
            assert not nodes[first_node.name].healthy and nodes[second_node.name].healthy
            # Pack would choose the fuller node; it does not answer, so the session goes to the other.
            moved = launcher.create("bob", "tiny")
            assert moved.node == second_node.name and moved.state == READY
            assert containers_on(second_node, scope) == {moved.container_id: "running"}
        finally:
            first_node.thaw()
        report = launcher.reconcile()
        assert report.recovered == [kept.id] and launcher.show(kept.id).state == READY
        assert launcher.pool.down() == {}
        assert containers_on(first_node, scope) == {kept.container_id: "running"}
        assert all(n.healthy for n in launcher.nodes())
        for record in (kept, moved):
            launcher.stop(record.id)
    finally:
        launcher.close()


def test_a_node_whose_engine_dies_loses_its_sessions_until_the_engine_is_back(engine_nodes, scope, tmp_path,
                                                                                data_root):
    first_node, second_node = engine_nodes.nodes
    launcher = launcher_on(engine_nodes, tmp_path, scope, data_root, placement="spread")
    try:
        on_first = launcher.create("alice", "tiny")
        on_second = launcher.create("bob", "tiny")
        assert (on_first.node, on_second.node) == (first_node.name, second_node.name)
        engine_nodes.kill(second_node)
        report = launcher.reconcile()
        assert report.lost == [on_second.id] and launcher.show(on_first.id).state == READY
        record = launcher.show(on_second.id)
        assert record.state == LOST and "not answering" in record.reason
        down = {n.name: n.down_reason for n in launcher.nodes() if not n.healthy}
        assert list(down) == [second_node.name]
        replacement = launcher.create("alice", "tiny")
        assert replacement.node == first_node.name  # spread would pick the emptier node: it is dead
        engine_nodes.restart(second_node)
        report = launcher.reconcile()
        # Live restore: the session's container outlived its engine and is ready again.
        assert report.recovered == [on_second.id] and launcher.show(on_second.id).state == READY
        assert containers_on(second_node, scope) == {on_second.container_id: "running"}
        for record in (on_first, on_second, replacement):
            launcher.stop(record.id)
        assert containers_on(first_node, scope) == {} and containers_on(second_node, scope) == {}
    finally:
        launcher.close()


def test_the_node_tooling_leaves_nothing_behind_when_a_test_fails(docker_client):
    """What every fixture here relies on: a failure inside the cluster still removes it all."""
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with NodeCluster(1, "gone", live_restore=True) as cluster:
            cluster.load_image(docker_client, TINY)
            node = cluster.nodes[0]
            client = node.client()
            try:  # a session left running, its engine hung: the worst case
                client.containers.run(TINY, ["sleep", "3600"], detach=True, init=True)
            finally:
                client.close()
            node.freeze()
            raise Boom()
    assert not cluster.base.exists() and not node.socket.exists()
    assert not any(p.name.startswith(f"asci-t-{cluster.token}") for p in Path("/run/netns").iterdir())
    assert not list(Path("/sys/fs/cgroup/pids").glob(f"asci-test-{cluster.token}-*"))
    assert not Path(f"/proc/{node.process.pid}").exists()
