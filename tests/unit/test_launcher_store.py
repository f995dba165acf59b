from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from asci_core.launcher.store import READY, STARTING, STOPPED, LOST, SessionRecord, SessionStore


def record(session_id: str, user: str = "alice", state: str = STARTING, node: str = "local") -> SessionRecord:
    now = time.time()
    return SessionRecord(session_id, user, "desktop", node, "", state, 1.5, 2 ** 31, 1, ("0",), now, now, now, "")


def test_records_survive_a_reopen_in_wal_mode(tmp_path: Path):
    path = tmp_path / "sessions.sqlite"
    store = SessionStore(path)
    store.insert(record("a" * 16))
    store.update("a" * 16, state=READY, container_id="c1")
    store.close()
    again = SessionStore(path)
    got = again.get("a" * 16)
    assert got.state == READY and got.container_id == "c1" and got.gpu_ids == ("0",) and got.memory == 2 ** 31
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_counting_and_listing(tmp_path: Path):
    store = SessionStore(tmp_path / "s.sqlite")
    store.insert(record("1" * 16, state=READY))
    store.insert(record("2" * 16, state=STOPPED))
    store.insert(record("3" * 16, state=LOST))
    store.insert(record("4" * 16, user="bob"))
    # A lost session does not hold its user back; a stopped one counts for nothing.
    assert store.count_active("alice") == 1 and store.count_active("bob") == 1
    assert {r.id for r in store.active()} == {"1" * 16, "3" * 16, "4" * 16}
    assert [r.id for r in store.list(user="bob")] == ["4" * 16]
    assert store.get("f" * 16) is None
    with pytest.raises(ValueError):
        store.update("1" * 16, password="x")
