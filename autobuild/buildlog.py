"""A build's log: a plain-text file per build, appended line by line as the engine streams.

Readers (`GET /builds/{id}/log?follow=1`, `asci builds log -f`) tail the same
file, so following a log never touches the build itself.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path


class BuildLog:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8", errors="replace")
        self._partial = ""

    def write(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        with self._lock:
            self._file.write(f"[{stamp}] {line.rstrip()}\n")
            self._file.flush()

    def write_raw(self, chunk: str) -> None:
        """Engine output arrives in chunks that may split or join lines."""
        self._partial += chunk
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if line.strip():
                self.write(line)

    def close(self) -> None:
        if self._partial.strip():
            self.write(self._partial)
        self._partial = ""
        with self._lock:
            self._file.close()

