"""The researcher's supplementary groups reach their sessions: `account: engine` through the engine's
group_add, `account: image` (the real desktop image) through ASCI_GROUPS and the entry point's own
/etc/group, so a group-readable file in their data is readable and one of another group is not."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from asci_core.launcher.errors import NotAllowed
from asci_core.launcher.settings import DEFAULT_ENVIRONMENT, MountSettings, with_registry
from tests.conftest import LABELS
from tests.integration import images_support
from tests.integration.launcher_support import build_launcher, make_data, tiny_environment, wait_for

pytestmark = pytest.mark.integration

USERS = ("users:\n  - {name: alice, uid: 5001, gid: 5001, groups: [i03, i04, nogid]}\n"
         "groups: {i03: 7003, i04: 7004}\n")
# By name in the desktop (the engine then takes the groups from the image's /etc/group, as a login
# would); by number where the engine made the account (its group_add applies to every exec).
SESSION_USER = {"image": "alice", "engine": "5001:5001"}


@pytest.fixture
def scope(unique) -> dict[str, str]:
    return {**LABELS, "asci.test.case": unique()}


@pytest.fixture
def desktop(stack, docker_client) -> str:
    return images_support.by_content(stack, docker_client, "desktop-base")


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """alice's data folder with a file of her group i04 and one of a group she is not in, both 0640
    and owned by root: only the group bits can let her read them."""
    root = tmp_path / "fs"
    make_data(root, ("alice", 5001))
    for name, gid in (("i04.txt", 7004), ("other.txt", 7999)):
        path = root / "data" / "alice" / name
        path.write_text(f"for group {gid}\n")
        os.chown(path, 0, gid)
        path.chmod(0o640)
    return root


def as_user(container, user: str, *argv: str) -> tuple[int, str]:
    code, out = container.exec_run(list(argv), user=user)
    return code, out.decode(errors="replace")


def status_groups(container) -> set[str] | None:
    """The supplementary groups of the session's PID 1 (tini, started by the entry point's setpriv);
    None while PID 1 is not the researcher yet."""
    code, out = as_user(container, "5001:5001", "cat", "/proc/1/status")
    assert code == 0, out
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    if fields["Uid"].split() != ["5001"] * 4:
        return None
    return set(fields["Groups"].split())


@pytest.mark.parametrize("account", ["engine", "image"])
def test_a_user_in_two_groups_has_both_in_the_session_and_reads_the_groups_file(
        stack, docker_client, scope, tmp_path, data_root, account, request):
    (tmp_path / "users.yaml").write_text(USERS)
    mount = MountSettings(f"{data_root}/data/{{user}}", "/home/{user}/data", True)
    if account == "engine":
        env = tiny_environment(data_root, allowed_groups=[], mounts=[mount])
    else:
        env = replace(with_registry(DEFAULT_ENVIRONMENT, stack.registry.address), cpus=1.0, mounts=[mount],
                      image=request.getfixturevalue("desktop"))
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [env])
    try:
        record = launcher.create("alice", env.name)
        container = docker_client.containers.get(record.container_id)
        variables = dict(v.split("=", 1) for v in container.attrs["Config"]["Env"])
        if account == "image":
            # Only the groups with a gid; the entry point makes them and drops root.
            assert variables["ASCI_GROUPS"] == "i03:7003,i04:7004"
            assert container.attrs["HostConfig"]["GroupAdd"] is None
            wait_for(lambda: status_groups(container), timeout=30, what="the session's PID 1 as alice")
        else:
            assert "ASCI_GROUPS" not in variables
            assert sorted(container.attrs["HostConfig"]["GroupAdd"]) == ["7003", "7004"]
        assert status_groups(container) == {"5001", "7003", "7004"}
        user = SESSION_USER[account]
        code, out = as_user(container, user, "id", "-G")
        assert code == 0 and sorted(out.split()) == ["5001", "7003", "7004"], out
        assert as_user(container, user, "cat", "/home/alice/data/i04.txt") == (0, "for group 7004\n")
        code, out = as_user(container, user, "cat", "/home/alice/data/other.txt")
        assert code != 0 and "Permission denied" in out
        launcher.stop(record.id)
    finally:
        launcher.close()


@pytest.mark.parametrize("groups, expected", [
    ("i03:7003,nogroup:7005", "ASCI_GROUPS group 'nogroup' already exists in the image with gid 65534"),
    ("i03:65534", "ASCI_GROUPS gid 65534 already belongs to group 'nogroup' in the image"),
    ("i03:0", "ASCI_GROUPS i03 must not be 0"),
    ("i03:999", "ASCI_GROUPS i03 999 is outside 1000..2147483646"),
    ("i03:7003,i04:7003", "ASCI_GROUPS gives gid 7003 to both 'i03' and 'i04'"),
    ("i03;rm -rf /:7003", "ASCI_GROUPS entry 'i03;rm -rf /:7003' must be NAME:GID"),
], ids=["name-of-an-image-group", "gid-of-an-image-group", "gid-0", "system-gid", "gid-twice", "bad-name"])
def test_bad_or_clashing_groups_end_the_desktop_at_once_with_one_line(docker_client, desktop, unique, groups,
                                                                      expected):
    container = images_support.run_desktop(docker_client, desktop, unique("groups"), ASCI_USER="alice",
                                           ASCI_UID="5001", ASCI_GROUPS=groups)
    try:
        assert container.wait(timeout=20)["StatusCode"] == 64
        lines = [line for line in container.logs().decode().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"asci-session: {expected}"), lines
    finally:
        container.remove(force=True)


def test_more_groups_than_the_desktop_takes_is_refused_before_anything_starts(stack, docker_client, scope, tmp_path,
                                                                               data_root, desktop):
    names = [f"g{i}" for i in range(257)]
    (tmp_path / "users.yaml").write_text(
        f"users:\n  - {{name: alice, uid: 5001, gid: 5001, groups: [{', '.join(names)}]}}\n"
        f"groups: {{{', '.join(f'{n}: {10000 + i}' for i, n in enumerate(names))}}}\n")
    env = replace(with_registry(DEFAULT_ENVIRONMENT, stack.registry.address), cpus=1.0, image=desktop)
    launcher = build_launcher(tmp_path, str(stack.config.stack.docker.socket), scope, [env])
    try:
        with pytest.raises(NotAllowed, match=r"takes? at most 256 groups .*gives 257$"):
            launcher.create("alice", env.name)
        assert launcher.list(include_stopped=True) == []
        assert docker_client.containers.list(all=True, filters={"label": [f"{k}={v}" for k, v in scope.items()]}) == []
    finally:
        launcher.close()
