"""Admission under a burst, and the clocks that end sessions (lifetime, idle)."""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from asci_core.launcher.errors import LimitReached, NoCapacity
from asci_core.launcher.store import READY, STOPPED
from tests.conftest import LABELS
from tests.integration.launcher_support import build_launcher, make_data, tiny_environment

pytestmark = pytest.mark.integration


@pytest.fixture
def scope(unique) -> dict[str, str]:
    return {**LABELS, "asci.test.case": unique()}


def scoped(docker_client, scope) -> list:
    return docker_client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in scope.items()]})


def test_a_burst_from_one_user_gets_exactly_the_limit(stack, docker_client, scope, tmp_path: Path):
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001))
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [tiny_environment(data)],
                              max_sessions_per_user=2)
    try:
        def attempt(_: int) -> str:
            try:
                return launcher.create("alice", "tiny").state
            except LimitReached:
                return "limited"

        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(attempt, range(24)))
        assert Counter(outcomes) == {READY: 2, "limited": 22}
        assert len(scoped(docker_client, scope)) == 2
    finally:
        launcher.close()


def test_concurrent_creates_never_overcommit_a_node(stack, docker_client, scope, tmp_path: Path):
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001), ("bob", 5002))
    # The node takes 2 CPUs; each session reserves 0.75: two fit, a third would not.
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope,
                              [tiny_environment(data, cpus=0.75)], max_sessions_per_user=3)
    try:
        def attempt(user: str) -> str:
            try:
                return launcher.create(user, "tiny").state
            except NoCapacity as exc:
                assert "local: 1.5 of 2 CPUs reserved, 0.75 needed" in str(exc)
                return "full"

        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(attempt, ["alice", "bob"] * 3))
        assert Counter(outcomes) == {READY: 2, "full": 4}
        assert len(scoped(docker_client, scope)) == 2
    finally:
        launcher.close()


def test_lifetime_and_idle_timeout_stop_sessions(stack, docker_client, scope, tmp_path: Path):
    data = tmp_path / "fs"
    make_data(data, ("alice", 5001), ("bob", 5002))
    envs = [tiny_environment(data, idle_timeout=600.0, max_lifetime=3600.0)]
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, envs)
    try:
        idle = launcher.create("alice", "tiny")
        busy = launcher.create("bob", "tiny")
        start = busy.created_at
        launcher.touch(busy.id, when=start + 500)
        assert launcher.cull(now=start + 100) == []
        assert launcher.cull(now=start + 700) == [(idle.id, "idle for 600 s")]
        assert launcher.show(idle.id).state == STOPPED and launcher.show(busy.id).state == READY
        launcher.touch(busy.id, when=start + 3500)
        assert launcher.cull(now=start + 3600) == [(busy.id, "maximum lifetime reached (3600 s)")]
        assert launcher.show(busy.id).reason == "maximum lifetime reached (3600 s)"
        assert scoped(docker_client, scope) == []
    finally:
        launcher.close()
