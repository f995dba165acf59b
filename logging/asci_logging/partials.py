"""Joining container lines that Docker split into several journal entries.

Docker's journald driver cuts lines longer than 16 KiB: every piece but the last
carries CONTAINER_PARTIAL_MESSAGE=true, and newer engines add
CONTAINER_PARTIAL_ID/_ORDINAL/_LAST. Pieces of different containers (and of
stdout and stderr of one container) interleave, so chains are kept per key.

A joined line is one document whose id is its first piece's, so the saved cursor
must never pass the first piece of a chain that is still open: `safe_cursor()`
gives the position just before the oldest open chain.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from asci_logging.journal_source import JournalEntry

PARTIAL_MESSAGE = "CONTAINER_PARTIAL_MESSAGE"
PARTIAL_ID = "CONTAINER_PARTIAL_ID"
MAX_OPEN_CHAINS = 1024


@dataclass(slots=True)
class Event:
    """One log line: a journal entry, or the joined pieces of a split one."""

    fields: dict[str, bytes]
    message: bytes
    cursor: str  # of the (first) entry: the document id comes from it
    realtime_us: int
    parts: int = 1
    original_bytes: int = 0  # set when pieces were dropped beyond the size cap
    incomplete: bool = False  # the last piece never came


@dataclass(slots=True)
class _Chain:
    first: JournalEntry
    cursor_before: str | None
    pieces: list[bytes] = field(default_factory=list)
    size: int = 0
    kept: int = 0
    parts: int = 0


class PartialJoiner:
    def __init__(self, max_bytes: int, timeout_s: float):
        self._max_bytes = max_bytes
        self._timeout_us = int(timeout_s * 1_000_000)
        self._open: dict[object, _Chain] = {}  # insertion order = age

    @property
    def open_chains(self) -> int:
        return len(self._open)

    def feed(self, entry: JournalEntry, cursor_before: str | None) -> list[Event]:
        """Events completed by ENTRY; CURSOR_BEFORE is the position of the entry read just before it."""
        f = entry.fields
        partial_id = f.get(PARTIAL_ID)
        is_partial = f.get(PARTIAL_MESSAGE) == b"true"
        if partial_id is None and not is_partial and not self._open:
            return [Event(f, f.get("MESSAGE", b""), entry.cursor, entry.realtime_us)]
        key: object = partial_id if partial_id is not None else (
            f.get("CONTAINER_ID_FULL") or f.get("CONTAINER_ID"), f.get("PRIORITY"))
        chain = self._open.get(key)
        if chain is None:
            if not is_partial:
                # A whole line (or a lone last piece whose start was shipped as incomplete).
                return [Event(f, f.get("MESSAGE", b""), entry.cursor, entry.realtime_us)]
            chain = self._open[key] = _Chain(entry, cursor_before)
        self._append(chain, f.get("MESSAGE", b""))
        done: list[Event] = []
        if not is_partial:
            del self._open[key]
            done.append(self._event(chain, incomplete=False))
        elif len(self._open) > MAX_OPEN_CHAINS:
            oldest = next(iter(self._open))
            done.append(self._event(self._open.pop(oldest), incomplete=True))
        return done

    def _append(self, chain: _Chain, piece: bytes) -> None:
        chain.parts += 1
        chain.size += len(piece)
        # Beyond the cap only the length is kept: memory stays bounded by the cap per chain.
        room = self._max_bytes + 1 - chain.kept
        if room > 0:
            chain.pieces.append(piece[:room])
            chain.kept += min(len(piece), room)

    def _event(self, chain: _Chain, incomplete: bool) -> Event:
        message = b"".join(chain.pieces)
        original = chain.size if chain.size > chain.kept else 0
        first = chain.first
        return Event(first.fields, message, first.cursor, first.realtime_us, chain.parts, original, incomplete)

    def flush_stale(self, newest_realtime_us: int) -> list[Event]:
        """Ship chains whose last piece is overdue (the container died mid-line, say) as incomplete."""
        if not self._open:
            return []
        limit = newest_realtime_us - self._timeout_us
        stale = [k for k, c in self._open.items() if c.first.realtime_us < limit]
        return [self._event(self._open.pop(k), incomplete=True) for k in stale]

    def safe_cursor(self, last_cursor: str | None) -> str | None:
        """Where a restart must begin so no open chain loses its first pieces."""
        if not self._open:
            return last_cursor
        return next(iter(self._open.values())).cursor_before
