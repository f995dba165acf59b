from __future__ import annotations

import json
import os
from pathlib import Path

import bcrypt
import pytest

from asci_core.launcher.directory import DirectoryError, LocalUsersFile, UnknownUser, Researcher

USERS = """
users:
  - {name: alice, uid: 1001, gid: 1001, groups: [beamline-i03]}
  - name: bob
    uid: 1002
    gid: 1002
    password_hash: "HASH"
"""


def users_file(tmp_path: Path, text: str, name: str = "users.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_lookup_by_name(tmp_path: Path):
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    directory = LocalUsersFile(users_file(tmp_path, USERS.replace("HASH", hashed)))
    assert directory.lookup("alice") == Researcher("alice", 1001, 1001, ("beamline-i03",))
    bob = directory.lookup("bob")
    assert bob.gid == 1002
    assert bcrypt.checkpw(b"pw", bob.password_hash.encode())
    assert hashed not in repr(bob)
    with pytest.raises(UnknownUser):
        directory.lookup("carol")
    with pytest.raises(UnknownUser):
        directory.lookup("../alice")


def test_json_works_too(tmp_path: Path):
    path = users_file(tmp_path, json.dumps({"users": [{"name": "alice", "uid": 1001, "gid": 1001}]}), "users.json")
    assert LocalUsersFile(path).lookup("alice").uid == 1001


def test_a_missing_file_is_an_empty_directory(tmp_path: Path):
    with pytest.raises(UnknownUser):
        LocalUsersFile(tmp_path / "none.yaml").lookup("alice")


def test_changes_are_picked_up_without_restart(tmp_path: Path):
    path = users_file(tmp_path, "users: []\n")
    directory = LocalUsersFile(path)
    with pytest.raises(UnknownUser):
        directory.lookup("alice")
    path.write_text("users: [{name: alice, uid: 1001, gid: 1001}]\n")
    os.utime(path, ns=(1, 10 ** 18))  # a distinct mtime even within the same clock tick
    assert directory.lookup("alice").uid == 1001


@pytest.mark.parametrize("entry,words", [
    ("{name: Alice, uid: 1001, gid: 1001}", "users[0].name: expected a user name"),
    ("{name: '../x', uid: 1001, gid: 1001}", "users[0].name"),
    ("{name: root, uid: 0, gid: 0}", "users[0].uid: expected a number from 1000"),
    ("{name: alice, uid: 1001, gid: 12}", "users[0].gid: expected a number from 1000"),
    ("{name: alice, uid: '1001', gid: 1001}", "users[0].uid"),
    ("{name: alice, uid: true, gid: 1001}", "users[0].uid"),
    ("{name: alice, uid: 1001, gid: 1001, groups: [Bad Group]}", "users[0].groups"),
    ("{name: alice, uid: 1001, gid: 1001, password_hash: plain}", "users[0].password_hash: expected a bcrypt hash"),
    ("{name: alice, uid: 1001, gid: 1001, shell: /bin/sh}", "users[0].shell: unknown field"),
    ("plain", "users[0]: expected a mapping"),
])
def test_invalid_entries_refuse_the_whole_file(tmp_path: Path, entry, words):
    path = users_file(tmp_path, f"users:\n  - {entry}\n")
    with pytest.raises(DirectoryError) as info:
        LocalUsersFile(path).lookup("alice")
    assert words in str(info.value) and str(path) in str(info.value)


def test_duplicates_are_refused(tmp_path: Path):
    twice = "users: [{name: a, uid: 1001, gid: 1001}, {name: a, uid: 1002, gid: 1001}]\n"
    with pytest.raises(DirectoryError, match="listed twice"):
        LocalUsersFile(users_file(tmp_path, twice)).lookup("a")
    same_uid = "users: [{name: a, uid: 1001, gid: 1001}, {name: b, uid: 1001, gid: 1001}]\n"
    with pytest.raises(DirectoryError, match="uid 1001 already belongs to 'a'"):
        LocalUsersFile(users_file(tmp_path, same_uid)).lookup("b")


def test_unparsable_file(tmp_path: Path):
    with pytest.raises(DirectoryError, match="not valid YAML"):
        LocalUsersFile(users_file(tmp_path, "users: [\n")).lookup("a")
