"""Sessions on several real Docker engines (one network namespace and one dockerd per node).

The launcher drives each engine directly: placement chooses the node, the session runs
there and nowhere else; a node whose engine hangs or dies is marked down, its sessions
are reported lost and new sessions go elsewhere; when it answers again its sessions are
ready again.
"""
from __future__ import annotations

import io
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from asci_core.launcher.errors import NoCapacity
from asci_core.launcher.settings import NodeSettings
from asci_core.launcher.store import LOST, READY, STOPPED
from asci_core.launcher.vnc_password import PASSWORD_COMMAND
from tests.conftest import LABELS
from tests.integration.launcher_nodes import NodeCluster, EngineNode, in_namespace, read_banner
from tests.integration.launcher_support import TINY, build_launcher, make_data, tiny_environment, wait_for

pytestmark = pytest.mark.integration
# Short: a hung engine is noticed within this many seconds.
NODE_TIMEOUT = 6.0  # generous: a busy 2-core CI machine must not make a healthy namespace engine look hung


# A stand-in VNC server: the tiny image with a password command (it keeps what it reads) that
# answers every connection on 5901 with an RFB version line.
VNC_STAND_IN = f"""FROM {TINY}
RUN mkdir -p /usr/local/bin && printf '#!/bin/sh\\nread -r p\\nprintf %%s "$p" > /tmp/vnc-password\\n' > {PASSWORD_COMMAND} \\
 && chmod 755 {PASSWORD_COMMAND}
"""
RFB_BANNER = b"RFB 003.008\n"
SERVE_VNC_BANNER = ["sh", "-c", 'while true; do echo "RFB 003.008" | nc -l -p 5901; done']


@pytest.fixture(scope="session")
def engine_nodes(docker_client) -> Iterator[NodeCluster]:
    vnc_image = f"asci-test-vnc-stand-in-{uuid.uuid4().hex[:8]}:1"
    image, _ = docker_client.images.build(fileobj=io.BytesIO(VNC_STAND_IN.encode()), tag=vnc_image, rm=True,
                                          labels=LABELS)
    with NodeCluster(2, "node", live_restore=True) as cluster:
        cluster.load_image(docker_client, TINY)
        cluster.load_image(docker_client, vnc_image)
        docker_client.images.remove(image.id, force=True)  # the nodes keep their copies
        cluster.vnc_image = vnc_image
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


# --- measured usage -----------------------------------------------------------------------------

def test_a_busy_session_raises_its_nodes_measured_cpu_above_an_idle_ones(engine_nodes, scope, tmp_path, data_root):
    first_node, second_node = engine_nodes.nodes
    busy = tiny_environment(data_root, name="busy", command=["sh", "-c", "yes > /dev/null"], cpus=0.5)
    launcher = build_launcher(tmp_path, "", scope, [tiny_environment(data_root), busy],
                              nodes=[node_settings(n) for n in engine_nodes], placement="spread",
                              usage_interval=0.5)
    try:
        spinning = launcher.create("alice", "busy")
        idle = launcher.create("bob", "tiny")
        assert (spinning.node, idle.node) == (first_node.name, second_node.name)

        def measured() -> dict:
            loads = {n.name: n for n in launcher.nodes()}
            # Both nodes sampled since their session started: the idle one shows its memory too.
            return loads if all(n.measured_at is not None and n.measured_memory > 0 for n in loads.values()) and \
                loads[first_node.name].measured_cpus >= 0.2 else {}
        loads = wait_for(measured, timeout=60, what="the busy session's CPU in its node's measured usage")
        busy_node, idle_node = loads[first_node.name], loads[second_node.name]
        # The engine caps the session at its reservation; the idle one measures next to nothing.
        assert busy_node.reserved_cpus == 0.5 and busy_node.measured_cpus <= 0.5 * 1.1
        assert idle_node.reserved_cpus == 0.25 and idle_node.measured_cpus < 0.1
        assert 0 < idle_node.measured_memory < 64 * 2 ** 20 and busy_node.measured_memory > 0
        for record in (spinning, idle):
            launcher.stop(record.id)
    finally:
        launcher.close()


def test_a_node_busy_with_work_asci_did_not_start_is_passed_over(engine_nodes, scope, tmp_path, data_root):
    first_node, second_node = engine_nodes.nodes
    # One CPU each for sessions: the foreign work on the first node leaves no room for 0.6 CPU.
    nodes = [NodeSettings(name=n.name, url=n.url, cpus=1.0, memory="4g", gpus=0, timeout=NODE_TIMEOUT)
             for n in engine_nodes]
    half = tiny_environment(data_root, name="half", cpus=0.6)
    launcher = build_launcher(tmp_path, "", scope, [half], nodes=nodes, placement="pack", usage_interval=0.5)
    client = first_node.client()
    foreign = client.containers.run(TINY, ["sh", "-c", "yes > /dev/null & yes > /dev/null"], detach=True,
                                    labels=scope, init=True)
    try:
        loads = wait_for(lambda: {n.name: n for n in launcher.nodes()
                                  if n.name == first_node.name and n.measured_cpus >= 0.6} or None,
                         timeout=60, what="the foreign work in the first node's measured usage")
        assert loads[first_node.name].reserved_cpus == 0 and loads[first_node.name].sessions == 0
        # Pack takes the first of two equally empty nodes by name; its reservations would fit,
        # what it really uses does not.
        record = launcher.create("alice", "half")
        assert record.node == second_node.name
        with pytest.raises(NoCapacity) as refused:
            launcher.create("bob", "half")
        assert f"{first_node.name}: " in str(refused.value) and "CPUs in use (measured; 0 reserved)" in str(
            refused.value)
        assert f"{second_node.name}: 0.6 of 1 CPUs reserved, 0.6 needed" in str(refused.value)
        launcher.stop(record.id)
    finally:
        foreign.remove(force=True)
        client.close()
        launcher.close()


# --- a hung node does not slow every create down --------------------------------------------------

HUNG_TIMEOUT = 8.0


def test_with_a_hung_node_later_creates_do_not_wait_for_it_and_it_comes_back(engine_nodes, scope, tmp_path,
                                                                             data_root):
    first_node, second_node = engine_nodes.nodes
    nodes = [NodeSettings(name=n.name, url=n.url, cpus=2.0, memory="4g", gpus=0, timeout=HUNG_TIMEOUT)
             for n in engine_nodes]
    huge = tiny_environment(data_root, name="huge", cpus=64)
    launcher = build_launcher(tmp_path, "", scope, [tiny_environment(data_root), huge], nodes=nodes,
                              placement="pack")
    created = []
    try:
        first_node.freeze()
        try:
            began = time.monotonic()
            created.append(launcher.create("alice", "tiny"))
            first_wait = time.monotonic() - began
            # The first create finds out: it waits the node's deadline once, not once per engine call.
            assert created[0].node == second_node.name and first_wait < 2 * HUNG_TIMEOUT
            began = time.monotonic()
            created.append(launcher.create("bob", "tiny"))
            second_wait = time.monotonic() - began
            assert created[1].node == second_node.name and second_wait < HUNG_TIMEOUT / 2
            began = time.monotonic()
            with pytest.raises(NoCapacity) as refused:
                launcher.create("alice", "huge")
            assert time.monotonic() - began < HUNG_TIMEOUT / 2
            # Its reason: the engine call's own timeout or the survey's deadline, whichever came first.
            why = str(refused.value).split(f"{first_node.name}: down (", 1)[1]
            assert why.startswith(("timed out; ", f"did not answer within {HUNG_TIMEOUT:g} s; ")), why
            assert "; retried in the background, " in why
            print(f"\ncreate with a hung node: first {first_wait:.2f} s, second {second_wait:.2f} s "
                  f"(node timeout {HUNG_TIMEOUT:g} s)")
        finally:
            first_node.thaw()
        # Nothing asks it on a request's path any more: the background prober brings it back.
        wait_for(lambda: launcher.pool.down() == {}, timeout=2 * HUNG_TIMEOUT + 60, what="the node back up")
        assert all(n.healthy for n in launcher.nodes())
        created.append(launcher.create("alice", "tiny"))
        assert created[-1].node == second_node.name  # pack: the fuller node that answers
        assert containers_on(second_node, scope) == {r.container_id: "running" for r in created}
    finally:
        for record in created:
            launcher.stop(record.id)
        launcher.close()


# --- a proxy on another machine -----------------------------------------------------------------

def test_a_remote_node_publishes_vnc_on_its_own_address_for_a_proxy_on_another_machine(engine_nodes, scope,
                                                                                        tmp_path, data_root):
    first_node, second_node = engine_nodes.nodes
    proxy = engine_nodes.attach_proxy()
    nodes = [node_settings(first_node, vnc_address="published", publish_address=first_node.address),
             node_settings(second_node)]
    desktop = tiny_environment(data_root, name="vnc", image=engine_nodes.vnc_image, command=SERVE_VNC_BANNER)
    launcher = build_launcher(tmp_path, "", scope, [desktop], nodes=nodes, placement="pack")
    try:
        published = launcher.create("alice", "vnc")
        assert published.node == first_node.name
        connection = launcher.connect(published.id, as_user="alice")
        assert connection.address == first_node.address and connection.port not in (0, 5901)

        def banner_seen_by_proxy() -> bool:
            try:
                return engine_nodes.on_proxy(lambda: read_banner(connection.address, connection.port)) == RFB_BANNER
            except OSError:  # the session's server is not listening yet
                return False
        wait_for(banner_seen_by_proxy, timeout=30, what=f"the session's VNC banner from the proxy at {proxy}")
        client = first_node.client()
        try:
            attrs = client.api.inspect_container(published.container_id)
            bridge = attrs["NetworkSettings"]["Networks"][launcher.settings.session_network]["IPAddress"]
            assert attrs["NetworkSettings"]["Ports"]["5901/tcp"] == [
                {"HostIp": first_node.address, "HostPort": str(connection.port)}]
            password = client.containers.get(published.container_id).exec_run(["cat", "/tmp/vnc-password"])
            assert password.output.decode() == connection.password.reveal()
        finally:
            client.close()
        # Bound to that address only: not on the node's loopback; and the bridge address the local
        # default would hand out is no way in from the proxy's machine.
        node_netns = Path("/run/netns") / first_node.netns
        with pytest.raises(ConnectionRefusedError):
            in_namespace(node_netns, lambda: read_banner("127.0.0.1", connection.port))
        with pytest.raises(OSError):
            engine_nodes.on_proxy(lambda: read_banner(bridge, 5901, timeout=2))
        launcher.stop(published.id)
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
