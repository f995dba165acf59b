"""Sessions on the real local engine: what a container gets, and what is refused with nothing started."""
from __future__ import annotations

import socket
from pathlib import Path

import pytest

from asci_core.launcher.directory import Researcher
from asci_core.launcher.errors import LimitReached, NoCapacity, NotAllowed, SessionNotFound, BadRequest, UnknownEnvironment
from asci_core.launcher.settings import NodeSettings
from asci_core.launcher.store import READY, STOPPED
from tests.conftest import LABELS
from tests.integration.launcher_support import (SilentEngine, build_launcher, make_data, tiny_environment,
                                                wait_for)

pytestmark = pytest.mark.integration


@pytest.fixture
def scope(unique) -> dict[str, str]:
    return {**LABELS, "asci.test.case": unique()}


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    root = tmp_path / "fs"
    make_data(root, ("alice", 5001), ("bob", 5002), ("carol", 5003))
    return root


def scoped(docker_client, scope) -> list:
    return docker_client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in scope.items()]})


def run_in(container, *cmd: str) -> tuple[int, str]:
    code, out = container.exec_run(list(cmd))
    return code, out.decode(errors="replace")


def test_a_session_gets_labels_limits_identity_and_mounts_then_stops(stack, docker_client, scope, tmp_path, data_root):
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [tiny_environment(data_root)])
    try:
        record = launcher.create("alice", "tiny")
        assert record.state == READY and record.node == "local" and record.container_id
        container = docker_client.containers.get(record.container_id)
        labels = container.labels
        assert {k: labels[k] for k in ("asci.component", "asci.user", "asci.environment", "asci.session")} == {
            "asci.component": "session", "asci.user": "alice", "asci.environment": "tiny", "asci.session": record.id}
        host = container.attrs["HostConfig"]
        assert host["NanoCpus"] == 250_000_000 and host["Memory"] == 64 * 1024 ** 2
        assert host["PidsLimit"] == 64 and host["ShmSize"] == 16 * 1024 ** 2
        assert host["SecurityOpt"] == ["no-new-privileges"] and host["CapDrop"] == ["ALL"] and not host["CapAdd"]
        assert host["Init"] is True and host["LogConfig"]["Type"] == "journald"
        assert host["NetworkMode"] == "asci-sessions"
        assert container.attrs["Config"]["User"] == "5001:5001"
        mounts = {m["Destination"]: (m["Source"], m["RW"]) for m in container.attrs["Mounts"]}
        assert mounts == {"/home/alice/data": (f"{data_root}/data/alice", False),
                          "/scratch": (f"{data_root}/scratch/alice", True)}
        # What the process really gets.
        assert run_in(container, "id", "-u")[1].strip() == "5001"
        status = run_in(container, "cat", "/proc/self/status")[1]
        assert "NoNewPrivs:\t1" in status and "CapEff:\t0000000000000000" in status
        assert run_in(container, "touch", "/home/alice/data/x")[0] != 0
        assert run_in(container, "touch", "/scratch/x")[0] == 0
        assert (data_root / "scratch/alice/x").exists()

        assert [r.id for r in launcher.list(user="alice")] == [record.id]
        stopped = launcher.stop(record.id, as_user="alice")
        assert stopped.state == STOPPED
        assert scoped(docker_client, scope) == []
        # Stopping again is not an error and changes nothing.
        assert launcher.stop(record.id).state == STOPPED
    finally:
        launcher.close()


def test_sessions_cannot_reach_each_other_but_the_host_reaches_them(stack, docker_client, scope, tmp_path, data_root):
    web = tiny_environment(data_root, "web", ["httpd", "-f", "-p", "8080", "-h", "/scratch"])
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [web])
    try:
        a = launcher.create("alice", "web")
        b = launcher.create("bob", "web")
        net = launcher.settings.session_network
        ip_a, ip_b = (docker_client.containers.get(r.container_id).attrs["NetworkSettings"]["Networks"][net]["IPAddress"]
                      for r in (a, b))

        def answers() -> bool:
            try:
                socket.create_connection((ip_a, 8080), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(answers, what="session A's server answering the host")
        container_b = docker_client.containers.get(b.container_id)
        probe = f"nc -w 2 {ip_a} 8080 </dev/null"  # busybox nc has no -z: connect, send nothing, close
        # The same probe succeeds from A itself, so a failure from B is the network, not the probe.
        assert run_in(docker_client.containers.get(a.container_id), "sh", "-c", probe)[0] == 0
        code, _ = run_in(container_b, "sh", "-c", probe)
        assert code != 0, "session B reached session A"
        assert ip_b != ip_a
    finally:
        launcher.close()


def test_the_per_user_limit(stack, docker_client, scope, tmp_path, data_root):
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [tiny_environment(data_root)],
                              max_sessions_per_user=1)
    try:
        first = launcher.create("alice", "tiny")
        with pytest.raises(LimitReached, match="'alice' already has 1 sessions \\(at most 1\\)"):
            launcher.create("alice", "tiny")
        assert len(scoped(docker_client, scope)) == 1
        launcher.create("bob", "tiny")  # the limit is per user
        launcher.stop(first.id)
        launcher.create("alice", "tiny")  # a stopped session no longer counts
        assert len(scoped(docker_client, scope)) == 2
    finally:
        launcher.close()


class OddDirectory:
    """A directory (as LDAP could be) that hands out a name no local users file would accept."""

    def lookup(self, name: str) -> Researcher:
        return Researcher(name, 5009, 5009, ("i03",))


@pytest.mark.parametrize("user,environment,error,words", [
    ("alice", "nope", UnknownEnvironment, "no environment named 'nope'"),
    ("carol", "tiny", NotAllowed, "'carol' may not start 'tiny'"),
    ("mallory", "tiny", NotAllowed, "'mallory' may not start sessions"),
    ("alice", "huge", NoCapacity, "local: 0 of 2 CPUs reserved, 64 needed"),
])
def test_refusals_start_nothing_and_record_nothing(stack, docker_client, scope, tmp_path, data_root,
                                                   user, environment, error, words):
    envs = [tiny_environment(data_root), tiny_environment(data_root, "huge", cpus=64)]
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, envs)
    try:
        with pytest.raises(error) as info:
            launcher.create(user, environment)
        assert words in str(info.value) and "\n" not in str(info.value)
        assert scoped(docker_client, scope) == [] and launcher.list(include_stopped=True) == []
    finally:
        launcher.close()


def test_a_mount_escaping_its_root_is_refused_with_nothing_started(stack, docker_client, scope, tmp_path, data_root):
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [tiny_environment(data_root)],
                              directory=OddDirectory())
    try:
        with pytest.raises(NotAllowed, match="would leave .*/data"):
            launcher.create("..", "tiny")
        assert scoped(docker_client, scope) == [] and launcher.list(include_stopped=True) == []
    finally:
        launcher.close()


def test_other_users_sessions_and_malformed_ids_are_not_found(stack, docker_client, scope, tmp_path, data_root):
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [tiny_environment(data_root)])
    try:
        record = launcher.create("alice", "tiny")
        with pytest.raises(SessionNotFound):
            launcher.stop(record.id, as_user="bob")
        with pytest.raises(SessionNotFound):
            launcher.show(record.id, as_user="bob")
        with pytest.raises(BadRequest):
            launcher.show("../../etc")
        assert docker_client.containers.get(record.container_id).status == "running"
    finally:
        launcher.close()


def test_a_node_that_hangs_is_marked_down_and_skipped(stack, docker_client, scope, tmp_path, data_root):
    silent = SilentEngine(tmp_path / "silent.sock")
    hung = NodeSettings(name="a-hung", url=f"unix://{silent.path}", cpus=64.0, memory="256g", gpus=0, timeout=1.0)
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [tiny_environment(data_root)],
                              extra_nodes=[hung])
    try:
        # The hung node is the emptier one: spread would choose it if it answered.
        record = launcher.create("alice", "tiny")
        assert record.node == "local"
        assert launcher.pool.down() == {"a-hung": "timed out"}
        loads = {n.name: n for n in launcher.nodes()}
        assert not loads["a-hung"].healthy and loads["local"].sessions == 1
    finally:
        launcher.close()
        silent.close()
