"""One container-event follower per engine: the `asci serve` holding an advisory lock on a file
named after the engine's ID logs the exits; the others on this host stand by and take over when
it ends, however it ends (the kernel drops a dead process's flock).

The file also holds the engine time of the last event its holder handled, so the next holder
asks the engine for what came after: exits between the holder's end and the take-over are
logged once, not lost and not twice. The position is written after the line, so a holder
killed in between leaves at most that one exit to be logged again.

Only serves that share the lock directory coordinate: one host, one engine. Serves on other
hosts following the same engine over TCP each log its exits.
"""
from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path

# A fixed-width record, so a shorter position never leaves a longer one's tail behind.
RECORD = "{:020d}\n"


def default_lock_dir() -> Path:
    """Shared by every `asci serve` of this host's user: /run/asci as root, else the user's runtime dir."""
    if os.geteuid() == 0:
        return Path("/run/asci")
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "asci" if runtime else Path(f"/tmp/asci-{os.getuid()}")


def lock_name(engine_id: str) -> str:
    # Engine IDs read like 4SDC:GHUD:...; the name must stay one plain file name whatever the engine says.
    return f"container-events-{re.sub(r'[^A-Za-z0-9]+', '-', engine_id).strip('-')[:128] or 'unknown'}.lock"


class LeaderLock:
    def __init__(self, directory: Path):
        self.directory = directory
        self.path: Path | None = None
        self._fd: int | None = None
        self.held = False

    def bind(self, engine_id: str) -> None:
        """Open the lock file of the engine with ENGINE_ID (the engine's `docker info` ID)."""
        self.directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        if self.directory.stat().st_uid != os.geteuid():
            # Another user's folder (e.g. a /tmp name taken first) could hold a lock nobody releases.
            raise PermissionError(f"{self.directory} belongs to another user")
        self.path = self.directory / lock_name(engine_id)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)

    @property
    def bound(self) -> bool:
        return self._fd is not None

    def try_take(self) -> bool:
        """True when this process now holds the lock (it did, or it was free)."""
        if self._fd is None:
            raise RuntimeError("bind() the lock to an engine first")
        if not self.held:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            self.held = True
        return True

    def position(self) -> int | None:
        """The engine time (ns) of the last event the previous holders handled; None if none did."""
        if self._fd is None:
            return None
        text = os.pread(self._fd, 64, 0).decode("ascii", "replace").strip()
        return int(text) if text.isdigit() else None

    def record(self, nano: int) -> None:
        if self._fd is not None and self.held:
            os.pwrite(self._fd, RECORD.format(nano).encode("ascii"), 0)

    def release(self) -> None:
        fd, self._fd, self.held = self._fd, None, False
        if fd is not None:
            os.close(fd)  # closing drops the flock
