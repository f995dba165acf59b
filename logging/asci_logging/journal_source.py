"""Reading the journal: the selected entries, in order, from a saved position.

Uses systemd-python's low-level calls (`_next`, `_get_all`, `_get_cursor`):
the converting `get_next()` is several times slower and we need raw bytes
anyway, to notice messages that are not UTF-8.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from systemd import journal

_TERM = re.compile(r"([A-Z0-9_]+)=(.*)", re.DOTALL)


@dataclass(slots=True)
class JournalEntry:
    fields: dict[str, bytes]
    cursor: str
    realtime_us: int


def parse_select(select: list[list[str]]) -> list[list[tuple[str, str]]]:
    """Check the `select` groups and split each FIELD=VALUE term; ValueError names the bad term."""
    if not select:
        raise ValueError("logging.shipper.select is empty: the shipper would read the whole journal")
    groups: list[list[tuple[str, str]]] = []
    for i, group in enumerate(select):
        if not group:
            raise ValueError(f"logging.shipper.select[{i}] is an empty group")
        terms = []
        for term in group:
            m = _TERM.fullmatch(term)
            if not m or m.group(1)[0].isdigit():
                raise ValueError(f"logging.shipper.select[{i}]: {term!r} is not FIELD=VALUE "
                                 "(journal field names are upper-case letters, digits and _)")
            terms.append((m.group(1), m.group(2)))
        groups.append(terms)
    return groups


class JournalSource:
    """One reader with the selection applied; `last_cursor` is the position of the last entry read."""

    def __init__(self, select: list[list[str]], directory: Path | None = None):
        self._groups = parse_select(select)
        self._directory = directory
        self._reader = self._open()
        self._tail_reader: journal.Reader | None = None
        self.last_cursor: str | None = None

    def _open(self) -> journal.Reader:
        reader = journal.Reader(path=str(self._directory)) if self._directory else journal.Reader()
        for i, group in enumerate(self._groups):
            if i:
                reader.add_disjunction()
            for name, value in group:
                reader.add_match(f"{name}={value}")
        return reader

    def resume(self, cursor: str | None, start_at: str) -> str:
        """Position after CURSOR (already shipped), else at the head or the present. Says what it did."""
        reader = self._reader
        if cursor:
            reader.seek_cursor(cursor)
            # After seek_cursor the next entry is the saved one itself, if it still exists.
            if reader._next():
                if reader.test_cursor(cursor):
                    self.last_cursor = cursor
                    return "resumed after the saved cursor"
                # The saved entry is gone (vacuumed): this one is the oldest we can still ship.
                reader._previous()
                self.last_cursor = None
                return "saved cursor not in the journal any more; resumed at the nearest entry"
            self.last_cursor = cursor
            return "resumed at the end of the journal after the saved cursor"
        if start_at == "tail":
            # seek_tail() with matches skipped the first new entry here; a time seek does not.
            reader.seek_realtime(time.time())
            return "no saved cursor; starting with new entries"
        reader.seek_head()
        return "no saved cursor; starting at the oldest entry"

    def next_entry(self) -> JournalEntry | None:
        reader = self._reader
        if not reader._next():
            return None
        cursor = reader._get_cursor()
        self.last_cursor = cursor
        return JournalEntry(reader._get_all(), cursor, reader._get_realtime())

    def wait(self, timeout: float) -> None:
        self._reader.wait(timeout)

    def newest_realtime_us(self) -> int | None:
        """Time stamp of the newest selected entry in the journal, read or not: the lag's reference."""
        if self._tail_reader is None:
            self._tail_reader = self._open()
        reader = self._tail_reader
        reader.seek_tail()
        if not reader._previous():
            return None
        return reader._get_realtime()

    def close(self) -> None:
        self._reader.close()
        if self._tail_reader is not None:
            self._tail_reader.close()
