"""What the services remember: the version each one runs, every roll, and tags that failed.

SQLite in WAL mode under STATE_DIR/services. A roll is written as `running`
before anything changes, so a restart of `asci serve` finds the roll it
interrupted and can undo it.
"""
from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
INTERRUPTED = "interrupted"
ROLLED_BACK = "rolled-back"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS current (
    service TEXT PRIMARY KEY, tag TEXT NOT NULL, digest TEXT, since REAL NOT NULL);
CREATE TABLE IF NOT EXISTS rolls (
    id INTEGER PRIMARY KEY AUTOINCREMENT, service TEXT NOT NULL, from_tag TEXT, to_tag TEXT NOT NULL,
    digest TEXT, result TEXT NOT NULL, reason TEXT, trigger TEXT NOT NULL,
    started_at REAL NOT NULL, duration REAL);
CREATE INDEX IF NOT EXISTS rolls_service ON rolls (service, id);
CREATE TABLE IF NOT EXISTS bad_tags (
    service TEXT NOT NULL, tag TEXT NOT NULL, reason TEXT, marked_at REAL NOT NULL, PRIMARY KEY (service, tag));
"""


@dataclass(frozen=True)
class Current:
    service: str
    tag: str
    digest: str | None
    since: float


@dataclass(frozen=True)
class Roll:
    id: int
    service: str
    from_tag: str | None
    to_tag: str
    digest: str | None
    result: str
    reason: str | None
    trigger: str
    started_at: float
    duration: float | None


class ServiceStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def current(self, service: str) -> Current | None:
        rows = self._run("SELECT * FROM current WHERE service = ?", (service,))
        return Current(**dict(rows[0])) if rows else None

    def set_current(self, service: str, tag: str, digest: str | None) -> None:
        self._run("INSERT INTO current (service, tag, digest, since) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT (service) DO UPDATE SET tag = excluded.tag, digest = excluded.digest, "
                  "since = excluded.since", (service, tag, digest, time.time()))

    def begin_roll(self, service: str, from_tag: str | None, to_tag: str, trigger: str) -> int:
        with self._lock:
            cur = self._db.execute("INSERT INTO rolls (service, from_tag, to_tag, result, trigger, started_at) "
                                   "VALUES (?, ?, ?, ?, ?, ?)", (service, from_tag, to_tag, RUNNING, trigger, time.time()))
            return int(cur.lastrowid)

    def end_roll(self, roll_id: int, result: str, digest: str | None = None, reason: str | None = None) -> None:
        self._run("UPDATE rolls SET result = ?, digest = COALESCE(?, digest), reason = ?, "
                  "duration = ? - started_at WHERE id = ?", (result, digest, reason, time.time(), roll_id))

    def running_rolls(self, service: str) -> list[Roll]:
        return [Roll(**dict(r)) for r in self._run("SELECT * FROM rolls WHERE service = ? AND result = ?",
                                                   (service, RUNNING))]

    def history(self, service: str, limit: int = 50) -> list[Roll]:
        return [Roll(**dict(r)) for r in self._run("SELECT * FROM rolls WHERE service = ? ORDER BY id DESC LIMIT ?",
                                                   (service, limit))]

    def mark_bad(self, service: str, tag: str, reason: str) -> None:
        self._run("INSERT OR IGNORE INTO bad_tags (service, tag, reason, marked_at) VALUES (?, ?, ?, ?)",
                  (service, tag, reason, time.time()))

    def bad_tags(self, service: str) -> set[str]:
        return {r["tag"] for r in self._run("SELECT tag FROM bad_tags WHERE service = ?", (service,))}
