"""Durable state of autobuild: deliveries, builds and their dependencies, in SQLite (WAL).

No delivery is acknowledged before its row is on disk: writes go through one
writer thread that commits with synchronous=FULL. Concurrent webhook requests
are committed together (group commit), so durability costs one fsync per batch
rather than one per request.
"""
from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    delivery_id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    event TEXT NOT NULL,
    repository TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS builds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key TEXT NOT NULL UNIQUE,
    repository TEXT NOT NULL,
    image TEXT NOT NULL,
    tag TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    status TEXT NOT NULL,
    trigger TEXT NOT NULL,
    triggered_by INTEGER REFERENCES builds(id),
    delivery_id TEXT,
    build_args TEXT NOT NULL DEFAULT '{}',
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    stages TEXT NOT NULL DEFAULT '[]',
    parents TEXT NOT NULL DEFAULT '[]',
    digest TEXT,
    error TEXT,
    failed_stage TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    tag_object TEXT
);
CREATE INDEX IF NOT EXISTS builds_by_status ON builds(status, not_before);
CREATE INDEX IF NOT EXISTS builds_by_repository ON builds(repository, status);
CREATE TABLE IF NOT EXISTS build_deps (
    build_id INTEGER NOT NULL REFERENCES builds(id),
    depends_on INTEGER NOT NULL REFERENCES builds(id),
    PRIMARY KEY (build_id, depends_on)
);
"""

QUEUED, RUNNING, SUCCEEDED, FAILED, SKIPPED = "queued", "running", "succeeded", "failed", "skipped"
FINISHED = (SUCCEEDED, FAILED, SKIPPED)


@dataclass
class Build:
    id: int
    repository: str
    image: str
    tag: str
    commit_sha: str
    status: str
    trigger: str
    triggered_by: int | None
    delivery_id: str | None
    build_args: dict[str, str]
    attempts: int
    not_before: float
    stages: list[dict[str, Any]]
    parents: list[dict[str, Any]]
    digest: str | None
    error: str | None
    failed_stage: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    depends_on: list[int] = field(default_factory=list)
    tag_object: str | None = None  # an annotated tag's object hash; commit_sha is then the commit it names

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Build":
        data = {k: row[k] for k in row.keys() if k != "dedupe_key"}
        for name in ("build_args", "stages", "parents"):
            data[name] = json.loads(data[name])
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class NewBuild:
    dedupe_key: str
    repository: str
    image: str
    tag: str
    commit_sha: str
    trigger: str
    triggered_by: int | None = None
    delivery_id: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()  # dedupe keys of builds in the same batch


@dataclass(frozen=True)
class Release:
    """A succeeded build of a tag: the commit it was built from, and the tag object if annotated."""
    build_id: int
    commit: str
    tag_object: str | None


class Store:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._writes: "queue.Queue[tuple[Callable[[sqlite3.Connection], Any], Future] | None]" = queue.Queue()
        writer = self._connect()
        writer.executescript(SCHEMA)
        columns = {r["name"] for r in writer.execute("PRAGMA table_info(builds)")}
        if "tag_object" not in columns:  # databases from before annotated tags were recorded
            writer.execute("ALTER TABLE builds ADD COLUMN tag_object TEXT")
        self._writer_thread = threading.Thread(target=self._write_loop, args=(writer,), name="autobuild-store",
                                               daemon=True)
        self._writer_thread.start()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk (fsync) before the webhook gets its 2xx.
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def close(self) -> None:
        self._writes.put(None)
        self._writer_thread.join(timeout=10)

    # --- writing ------------------------------------------------------------

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> "Future[T]":
        future: Future = Future()
        self._writes.put((fn, future))
        return future

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self.submit(fn).result()

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        while True:
            item = self._writes.get()
            if item is None:
                conn.close()
                return
            batch = [item]
            while len(batch) < 500:
                try:
                    nxt = self._writes.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._writes.put(None)
                    break
                batch.append(nxt)
            results: list[tuple[Future, bool, Any]] = []
            try:
                conn.execute("BEGIN IMMEDIATE")
                for i, (fn, future) in enumerate(batch):
                    conn.execute(f"SAVEPOINT w{i}")
                    try:
                        results.append((future, True, fn(conn)))
                        conn.execute(f"RELEASE w{i}")
                    except Exception as exc:  # one bad write must not sink the batch
                        conn.execute(f"ROLLBACK TO w{i}")
                        conn.execute(f"RELEASE w{i}")
                        results.append((future, False, exc))
                conn.execute("COMMIT")
            except Exception as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for future, ok, value in results:
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)

    # --- reading ------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def get(self, build_id: int) -> Build | None:
        conn = self._reader()
        row = conn.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
        if row is None:
            return None
        build = Build.from_row(row)
        build.depends_on = [r[0] for r in conn.execute(
            "SELECT depends_on FROM build_deps WHERE build_id = ? ORDER BY depends_on", (build_id,))]
        return build

    def list(self, repository: str | None = None, status: str | None = None, limit: int = 100) -> list[Build]:
        sql, args = "SELECT * FROM builds WHERE 1=1", []
        if repository:
            sql += " AND repository = ?"
            args.append(repository)
        if status:
            sql += " AND status = ?"
            args.append(status)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [Build.from_row(r) for r in self._reader().execute(sql, args)]

    def delivery(self, delivery_id: str) -> dict[str, Any] | None:
        row = self._reader().execute("SELECT * FROM deliveries WHERE delivery_id = ?", (delivery_id,)).fetchone()
        return None if row is None else {**dict(row), "detail": json.loads(row["detail"])}

    def counts(self) -> dict[str, int]:
        rows = self._reader().execute("SELECT status, COUNT(*) FROM builds GROUP BY status")
        return {status: n for status, n in rows}

    def latest_succeeded(self) -> dict[str, Build]:
        """The newest successful build of each repository: the source of the inheritance graph."""
        rows = self._reader().execute(
            "SELECT * FROM builds WHERE id IN (SELECT MAX(id) FROM builds WHERE status = ? GROUP BY repository)",
            (SUCCEEDED,))
        return {b.repository: b for b in map(Build.from_row, rows)}

    def releases(self, repository: str, tags: list[str]) -> dict[str, list[Release]]:
        """The succeeded builds of these tags of REPOSITORY, oldest first: what each tag was released as."""
        found: dict[str, list[Release]] = {}
        for start in range(0, len(tags), 500):  # SQLite caps the number of bound parameters
            chunk = tags[start:start + 500]
            rows = self._reader().execute(
                f"SELECT id, tag, commit_sha, tag_object FROM builds WHERE repository = ? AND status = ?"
                f" AND tag IN ({','.join('?' * len(chunk))}) ORDER BY id", (repository, SUCCEEDED, *chunk))
            for build_id, tag, commit, tag_object in rows:
                found.setdefault(tag, []).append(Release(build_id, commit, tag_object))
        return found

    def succeeded_tags(self, repository: str) -> list[str]:
        rows = self._reader().execute("SELECT DISTINCT tag FROM builds WHERE repository = ? AND status = ?",
                                      (repository, SUCCEEDED))
        return [r[0] for r in rows]


# --- write operations (run on the writer thread inside one transaction) ----------


def record_delivery(delivery_id: str, event: str, repository: str, outcome: str, detail: list[dict[str, Any]],
                    builds: list[NewBuild]) -> Callable[[sqlite3.Connection], dict[str, Any]]:
    """Store a delivery and its builds once; a repeated delivery id returns what the first one stored."""

    def op(conn: sqlite3.Connection) -> dict[str, Any]:
        existing = conn.execute("SELECT outcome, detail FROM deliveries WHERE delivery_id = ?",
                                (delivery_id,)).fetchone()
        if existing is not None:
            return {"duplicate": True, "outcome": existing["outcome"], "detail": json.loads(existing["detail"])}
        ids = insert_builds(builds)(conn)
        for entry in detail:
            if entry.get("dedupe_key") in ids:
                entry["build_id"], entry["new"] = ids[entry.pop("dedupe_key")]
        conn.execute("INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?)",
                     (delivery_id, time.time(), event, repository, outcome, json.dumps(detail)))
        return {"duplicate": False, "outcome": outcome, "detail": detail}

    return op


def insert_builds(builds: list[NewBuild]) -> Callable[[sqlite3.Connection], dict[str, tuple[int, bool]]]:
    """Insert builds unless one with the same dedupe key exists: {key: (id, newly inserted)}."""

    def op(conn: sqlite3.Connection) -> dict[str, tuple[int, bool]]:
        ids: dict[str, tuple[int, bool]] = {}
        now = time.time()
        for b in builds:
            cur = conn.execute(
                "INSERT OR IGNORE INTO builds (dedupe_key, repository, image, tag, commit_sha, status, trigger,"
                " triggered_by, delivery_id, build_args, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (b.dedupe_key, b.repository, b.image, b.tag, b.commit_sha, QUEUED, b.trigger, b.triggered_by,
                 b.delivery_id, json.dumps(b.build_args), now))
            if cur.rowcount:
                ids[b.dedupe_key] = (cur.lastrowid, True)
            else:
                row = conn.execute("SELECT id FROM builds WHERE dedupe_key = ?", (b.dedupe_key,)).fetchone()
                ids[b.dedupe_key] = (row[0], False)
        for b in builds:
            build_id, new = ids[b.dedupe_key]
            if new:
                for dep in b.depends_on:
                    conn.execute("INSERT OR IGNORE INTO build_deps VALUES (?, ?)", (build_id, ids[dep][0]))
        return ids

    return op


def claim_next(now: float) -> Callable[[sqlite3.Connection], int | None]:
    """Take the oldest runnable build: due, its image not being built, its dependencies done."""

    def op(conn: sqlite3.Connection) -> int | None:
        row = conn.execute(
            """
            SELECT b.id FROM builds b
            WHERE b.status = 'queued' AND b.not_before <= ?
              AND NOT EXISTS (SELECT 1 FROM builds r WHERE r.status = 'running' AND r.image = b.image)
              AND NOT EXISTS (SELECT 1 FROM build_deps d JOIN builds p ON p.id = d.depends_on
                              WHERE d.build_id = b.id AND p.status != 'succeeded')
            ORDER BY b.not_before, b.id LIMIT 1
            """, (now,)).fetchone()
        if row is None:
            return None
        conn.execute("UPDATE builds SET status = 'running', attempts = attempts + 1, started_at = ?,"
                     " finished_at = NULL WHERE id = ?", (now, row[0]))
        return row[0]

    return op


def set_fields(build_id: int, **fields: Any) -> Callable[[sqlite3.Connection], None]:
    allowed = {"status", "not_before", "stages", "parents", "digest", "error", "failed_stage", "finished_at",
               "commit_sha", "tag_object"}
    assert set(fields) <= allowed, set(fields) - allowed
    encoded = {k: json.dumps(v) if k in ("stages", "parents") else v for k, v in fields.items()}

    def op(conn: sqlite3.Connection) -> None:
        assignments = ", ".join(f"{k} = ?" for k in encoded)
        conn.execute(f"UPDATE builds SET {assignments} WHERE id = ?", (*encoded.values(), build_id))

    return op


def skip_dependents(build_id: int, reason: str) -> Callable[[sqlite3.Connection], list[int]]:
    """A failed build's queued dependents can never run: mark them (transitively) skipped."""

    def op(conn: sqlite3.Connection) -> list[int]:
        skipped: list[int] = []
        frontier = [build_id]
        while frontier:
            current = frontier.pop()
            for (dep_id,) in conn.execute(
                    "SELECT d.build_id FROM build_deps d JOIN builds b ON b.id = d.build_id"
                    " WHERE d.depends_on = ? AND b.status = 'queued'", (current,)).fetchall():
                conn.execute("UPDATE builds SET status = 'skipped', error = ?, finished_at = ? WHERE id = ?",
                             (reason, time.time(), dep_id))
                skipped.append(dep_id)
                frontier.append(dep_id)
        return skipped

    return op


def requeue_interrupted() -> Callable[[sqlite3.Connection], list[int]]:
    """After a crash, builds left 'running' belong to no worker: queue them again."""

    def op(conn: sqlite3.Connection) -> list[int]:
        ids = [r[0] for r in conn.execute("SELECT id FROM builds WHERE status = 'running'")]
        conn.execute("UPDATE builds SET status = 'queued', not_before = 0 WHERE status = 'running'")
        return ids

    return op


def retry_build(build_id: int, force: bool = False) -> Callable[[sqlite3.Connection], int | None]:
    """Queue a finished build again as a new build of the same tag and commit.

    A succeeded build is a release: it is built again only when forced (None otherwise).
    """

    def op(conn: sqlite3.Connection) -> int | None:
        row = conn.execute("SELECT * FROM builds WHERE id = ?", (build_id,)).fetchone()
        if row is None:
            raise KeyError(build_id)
        if row["status"] not in FINISHED:
            raise ValueError(f"build {build_id} is {row['status']}; only finished builds can be retried")
        if row["status"] == SUCCEEDED and not force:
            return None
        cur = conn.execute(
            "INSERT INTO builds (dedupe_key, repository, image, tag, commit_sha, status, trigger, triggered_by,"
            " build_args, created_at, tag_object) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (f"retry:{build_id}:{time.time_ns()}", row["repository"], row["image"], row["tag"], row["commit_sha"],
             QUEUED, "retry", build_id, row["build_args"], time.time(), row["tag_object"]))
        return cur.lastrowid

    return op
