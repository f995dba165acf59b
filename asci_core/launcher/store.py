"""Session records in SQLite (WAL, synchronous=FULL): what the launcher promised.

A record is written before the container is created (state `starting`), so a
crash in between leaves a record that reconciliation closes, never a container
nobody knows about. The password of `connect` is never stored here.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    environment TEXT NOT NULL,
    node TEXT NOT NULL,
    container_id TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    cpus REAL NOT NULL,
    memory INTEGER NOT NULL,
    gpus INTEGER NOT NULL DEFAULT 0,
    gpu_ids TEXT NOT NULL DEFAULT '[]',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_activity REAL NOT NULL,
    reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user, state);
CREATE INDEX IF NOT EXISTS sessions_by_state ON sessions(state, node);
"""

STARTING, READY, STOPPING, STOPPED, LOST = "starting", "ready", "stopping", "stopped", "lost"
STATES = (STARTING, READY, STOPPING, STOPPED, LOST)
# States that count against a user's limit and a node's capacity.
ACTIVE = (STARTING, READY, STOPPING, LOST)
# A lost session (its node stopped answering) does not keep its user from starting another.
COUNTED_FOR_USER = (STARTING, READY, STOPPING)


@dataclass(frozen=True)
class SessionRecord:
    id: str
    user: str
    environment: str
    node: str
    container_id: str
    state: str
    cpus: float
    memory: int
    gpus: int
    gpu_ids: tuple[str, ...]
    created_at: float
    updated_at: float
    last_activity: float
    reason: str

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "SessionRecord":
        data = dict(row)
        # Most sessions hold no GPU: skipping the parse of "[]" is a third of listing 1,000 records.
        data["gpu_ids"] = () if data["gpu_ids"] == "[]" else tuple(json.loads(data["gpu_ids"]))
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["gpu_ids"] = list(self.gpu_ids)
        return data


class SessionStore:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a session the API reported created is on disk before the answer leaves.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _rows(self, sql: str, args: tuple = ()) -> list[SessionRecord]:
        with self._lock:
            return [SessionRecord.from_row(r) for r in self._conn.execute(sql, args).fetchall()]

    def _write(self, sql: str, args: tuple) -> int:
        with self._lock:
            return self._conn.execute(sql, args).rowcount

    def insert(self, record: SessionRecord) -> None:
        data = record.to_json()
        data["gpu_ids"] = json.dumps(data["gpu_ids"])
        columns = ", ".join(data)
        self._write(f"INSERT INTO sessions ({columns}) VALUES ({', '.join('?' * len(data))})",
                    tuple(data.values()))

    def update(self, session_id: str, **changes: Any) -> SessionRecord | None:
        if "gpu_ids" in changes:
            changes["gpu_ids"] = json.dumps(list(changes["gpu_ids"]))
        changes.setdefault("updated_at", time.time())
        unknown = set(changes) - set(SessionRecord.__dataclass_fields__)
        if unknown:
            raise ValueError(f"not a session field: {sorted(unknown)}")
        assignments = ", ".join(f"{k} = ?" for k in changes)
        self._write(f"UPDATE sessions SET {assignments} WHERE id = ?", (*changes.values(), session_id))
        return self.get(session_id)

    def get(self, session_id: str) -> SessionRecord | None:
        rows = self._rows("SELECT * FROM sessions WHERE id = ?", (session_id,))
        return rows[0] if rows else None

    def list(self, user: str | None = None, states: tuple[str, ...] = STATES, limit: int = 1000) -> list[SessionRecord]:
        sql = f"SELECT * FROM sessions WHERE state IN ({', '.join('?' * len(states))})"
        args: list[Any] = list(states)
        if user is not None:
            sql += " AND user = ?"
            args.append(user)
        sql += " ORDER BY created_at DESC, id LIMIT ?"
        args.append(limit)
        return self._rows(sql, tuple(args))

    def active(self) -> Iterator[SessionRecord]:
        return iter(self.list(states=ACTIVE, limit=1_000_000))

    def count_active(self, user: str) -> int:
        with self._lock:
            (n,) = self._conn.execute(
                f"SELECT COUNT(*) FROM sessions WHERE user = ? AND state IN ({', '.join('?' * len(COUNTED_FOR_USER))})",
                (user, *COUNTED_FOR_USER)).fetchone()
        return n
