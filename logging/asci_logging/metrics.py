"""The shipper's counters, shared by its reading and sending threads, and their snapshots.

A snapshot is logged as one JSON line and written to a file that `asci logging
status` (or a monitoring agent) reads; counting is under a lock because two
threads add to it.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Counters:
    entries_read: int = 0  # journal entries, split lines counted per piece
    events_read: int = 0  # log lines turned into documents
    events_sent: int = 0  # documents the engine indexed
    events_failed: int = 0  # documents the engine rejected: in the dead-letter index
    events_lost: int = 0  # rejected and even the dead letter refused (logged with their message)
    events_retried: int = 0  # documents sent again after a 429/5xx item or a failed request
    bulk_requests: int = 0
    bulk_failures: int = 0  # whole requests that failed (engine away, overloaded, refusing)
    lag_seconds: float | None = None  # age of the oldest entry read but not yet accepted by the engine; 0 when caught up
    cursor: str | None = None
    state: str = "starting"
    last_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Metrics:
    def __init__(self, path: Path | None):
        self._lock = threading.Lock()
        self._c = Counters()
        self._path = path
        self._started = time.monotonic()
        self._cpu0 = _cpu()
        self.acked_realtime_us: int | None = None
        self.max_buffered = 0

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self._c, name, getattr(self._c, name) + delta)
            buffered = self._c.events_read - self._c.events_sent - self._c.events_failed - self._c.events_lost
            self.max_buffered = max(self.max_buffered, buffered)

    def set(self, **values: Any) -> None:
        with self._lock:
            for name, value in values.items():
                setattr(self._c, name, value)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            data = asdict(self._c)
            extra = data.pop("extra")
            data["buffered"] = data["events_read"] - data["events_sent"] - data["events_failed"] - data["events_lost"]
            data["max_buffered"] = self.max_buffered
        data["uptime_seconds"] = round(time.monotonic() - self._started, 3)
        data["cpu_seconds"] = round(_cpu() - self._cpu0, 3)
        data["pid"] = os.getpid()
        data.update(extra)
        return data

    def write(self) -> dict[str, Any]:
        data = self.snapshot()
        if self._path is not None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_name(self._path.name + ".tmp")
            tmp.write_text(json.dumps(data, indent=1) + "\n")
            os.replace(tmp, self._path)
        return data


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


class Backlog:
    """Journal times of the entries read but not yet accepted by the engine, batch by batch.

    The lag is the age of the oldest of them: it keeps growing while the engine is away,
    including after a restart of the shipper, before anything at all has been accepted.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._first_us: dict[int, int] = {}  # batch seq -> journal time of its first entry

    def handed_off(self, seq: int, first_us: int | None) -> None:
        if first_us is not None:
            with self._lock:
                self._first_us[seq] = first_us

    def accepted(self, seq: int) -> None:
        with self._lock:
            self._first_us.pop(seq, None)

    def oldest_us(self, filling_first_us: int | None = None) -> int | None:
        """The oldest unaccepted entry's time, counting the batch still being filled."""
        with self._lock:
            times = list(self._first_us.values())
        if filling_first_us is not None:
            times.append(filling_first_us)
        return min(times) if times else None


def lag_seconds(now_us: int, oldest_unaccepted_us: int | None, caught_up: bool,
                fallback: float | None) -> float | None:
    """Age of the oldest entry not yet accepted; 0 when everything read is accepted and nothing is left."""
    if oldest_unaccepted_us is not None:
        return round(max(0, now_us - oldest_unaccepted_us) / 1e6, 3)
    if caught_up:
        return 0.0
    return fallback
