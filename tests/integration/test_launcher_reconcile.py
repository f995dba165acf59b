"""After a restart the launcher agrees with the engines again: adopt, remove, close, lose, recover."""
from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest

from asci_core.launcher.errors import NoCapacity
from asci_core.launcher.inventory import Reservation, scope_labels
from asci_core.launcher.sessions import ReconcileReport
from asci_core.launcher.settings import NodeSettings
from asci_core.launcher.store import LOST, READY, STARTING, STOPPED, SessionRecord
from tests.conftest import LABELS
from tests.integration.launcher_support import TINY, EngineRelay, build_launcher, make_data, tiny_environment, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def scope(unique) -> dict[str, str]:
    return {**LABELS, "asci.test.case": unique()}


def session_labels(scope: dict[str, str], session: str, user: str, environment: str) -> dict[str, str]:
    reservation = Reservation(session, "local", user, environment, 0.25, 64 * 1024 ** 2)
    return {**scope_labels(scope), **reservation.labels(), "asci.component": "session", "asci.user": user,
            "asci.environment": environment}


def test_a_new_launcher_on_the_same_store_adopts_removes_and_closes(stack, docker_client, scope, tmp_path: Path):
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001), ("bob", 5002))
    socket_path = str(stack.config.stack.docker.socket)
    envs = [tiny_environment(data)]
    first = build_launcher(tmp_path, socket_path, scope, envs)
    kept = first.create("alice", "tiny")
    vanished = first.create("bob", "tiny")
    first.close()  # `asci serve` stops; the sessions keep running
    docker_client.containers.get(vanished.container_id).remove(force=True)

    orphan = secrets.token_hex(8)  # a session whose record was lost (e.g. a restored database)
    adopted = docker_client.containers.run(TINY, ["sleep", "3600"], detach=True, init=True,
                                           labels=session_labels(scope, orphan, "alice", "tiny"))
    stray = docker_client.containers.run(TINY, ["sleep", "3600"], detach=True, init=True,
                                         labels=session_labels(scope, secrets.token_hex(8), "alice", "retired-env"))
    exited = docker_client.containers.run(TINY, ["true"], detach=True,
                                          labels=session_labels(scope, secrets.token_hex(8), "alice", "tiny"))
    exited.wait(timeout=30)
    second = build_launcher(tmp_path, socket_path, scope, envs)
    try:
        now = time.time()
        crashed = secrets.token_hex(8)  # created in the store, then the process died before the container existed
        second.store.insert(SessionRecord(crashed, "bob", "tiny", "local", "", STARTING, 0.25, 64 * 1024 ** 2, 0, (),
                                          now, now, now, ""))
        report = second.reconcile()
        assert report.adopted == [orphan]
        assert sorted(report.removed) == sorted([stray.id, exited.id])
        assert sorted(report.closed) == sorted([vanished.id, crashed])
        assert second.show(kept.id).state == READY
        assert (second.show(vanished.id).state, second.show(vanished.id).reason) == (STOPPED, "container vanished")
        assert second.show(crashed).state == STOPPED
        adopted_record = second.show(orphan)
        assert (adopted_record.state, adopted_record.user, adopted_record.container_id) == (READY, "alice", adopted.id)
        assert adopted_record.created_at <= now  # its lifetime counts from the container's creation
        remaining = {c.id for c in docker_client.containers.list(all=True, filters={
            "label": [f"{k}={v}" for k, v in scope.items()]})}
        assert remaining == {kept.container_id, adopted.id}
        # Agreement reached: a second pass has nothing to do.
        assert second.reconcile() == ReconcileReport()
        # An adopted session is an ordinary one.
        assert second.stop(orphan).state == STOPPED
    finally:
        second.close()


def test_a_node_that_stops_answering_loses_its_sessions_and_gets_them_back(stack, docker_client, scope,
                                                                             tmp_path: Path):
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001))
    relay = EngineRelay(tmp_path / "n1.sock", str(stack.config.stack.docker.socket))
    node = NodeSettings(name="n1", url=f"unix://{relay.path}", cpus=2.0, memory="4g", gpus=0)
    launcher = build_launcher(tmp_path, "", scope, [tiny_environment(data)], nodes=[node])
    try:
        with pytest.raises(NoCapacity, match="n1: down"):
            launcher.create("alice", "tiny")
        assert "n1" in launcher.pool.down()
        relay.restore()
        record = launcher.create("alice", "tiny")  # the node is tried again, and answers
        assert record.node == "n1" and launcher.pool.down() == {}
        relay.cut()
        report = launcher.reconcile()
        assert report.lost == [record.id] and launcher.show(record.id).state == LOST
        assert "not answering" in launcher.show(record.id).reason
        relay.restore()
        report = launcher.reconcile()
        assert report.recovered == [record.id] and launcher.show(record.id).state == READY
        assert wait_for(lambda: docker_client.containers.get(record.container_id).status == "running")
    finally:
        launcher.close()
        relay.cut()


def test_two_node_entries_on_one_engine_do_not_remove_each_others_sessions(stack, docker_client, scope,
                                                                           tmp_path: Path):
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001))
    socket_path = str(stack.config.stack.docker.socket)
    local = NodeSettings(name="local", url=f"unix://{socket_path}", cpus=2.0, memory="4g", gpus=0)
    alias = NodeSettings(name="alias", url=f"unix://{socket_path}", cpus=2.0, memory="4g", gpus=0)
    launcher = build_launcher(tmp_path, socket_path, scope, [tiny_environment(data)], nodes=[local, alias])
    try:
        record = launcher.create("alice", "tiny")
        report = launcher.reconcile()
        assert report == ReconcileReport()
        assert launcher.show(record.id).state == READY
        assert docker_client.containers.get(record.container_id).status == "running"
    finally:
        launcher.close()


def test_the_unscoped_launcher_never_touches_a_scoped_session(stack, docker_client, scope, tmp_path: Path):
    # `asci serve` on the embedded defaults reconciles with no scope: a test run's sessions on the same
    # engine are neither adopted nor removed by it, and it does not count them as its own.
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001))
    socket_path = str(stack.config.stack.docker.socket)
    envs = [tiny_environment(data)]
    for side in ("scoped", "unscoped"):
        (tmp_path / side).mkdir()
    scoped = build_launcher(tmp_path / "scoped", socket_path, scope, envs)
    record = scoped.create("alice", "tiny")
    unscoped = build_launcher(tmp_path / "unscoped", socket_path, {}, envs)
    try:
        unscoped.reconcile()
        assert docker_client.containers.get(record.container_id).status == "running"
        assert [r.id for r in unscoped.list()] == []
    finally:
        unscoped.close()
        scoped.stop(record.id)
        scoped.close()
