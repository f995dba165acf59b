"""The shipper's saved journal position: written only after the engine accepted everything before it."""
from __future__ import annotations

import os
from pathlib import Path


class CursorStore:
    def __init__(self, path: Path):
        self.path = path

    def load(self) -> str | None:
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return None
        return text or None

    def save(self, cursor: str) -> None:
        # Write, fsync, rename, fsync the folder: after a crash the file holds the old or the
        # new cursor, never a torn one, and never a cursor for lines the engine does not have.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, cursor.encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
