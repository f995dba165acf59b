"""The stack's memory of what it started, in STATE_DIR/stack.json under a lock."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Iterator

from asci_core.errors import AsciError
from asci_core.stack.part import Started


class StateDirError(AsciError):
    """STATE_DIR cannot be created or written; the message names it and why."""


class StackState:
    def __init__(self, state_dir: Path):
        self.dir = state_dir
        self.path = state_dir / "stack.json"
        self.lock_path = state_dir / "stack.lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise `up` and `down`: parallel test runners share one stack."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            handle = open(self.lock_path, "a")
        except OSError as exc:
            raise StateDirError(f"state directory {self.dir} is not usable ({exc.strerror or exc}); "
                                "set stack.state_dir or $ASCI_STATE_DIR") from None
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def load(self) -> dict[str, Started]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            # A torn or hand-edited file must not stop `down` from working.
            return {}
        return {name: Started.from_json(rec) for name, rec in raw.get("parts", {}).items()}

    def save(self, records: dict[str, Started]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"parts": {n: r.to_json() for n, r in records.items()}}, indent=2))
        os.replace(tmp, self.path)
