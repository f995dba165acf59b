"""Start background services detached, and recognise them again later.

A pid alone is not an identity (pids are reused), so a record keeps the
process start time from /proc too; `down` only signals a process whose pid
and start time both still match what `up` recorded.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    start_ticks: int

    @classmethod
    def of(cls, pid: int) -> "ProcessIdentity | None":
        stat = _read_stat(pid)
        return None if stat is None else cls(pid, stat[1])

    def alive(self) -> bool:
        stat = _read_stat(self.pid)
        # A zombie has exited; only its parent has not collected it yet.
        return stat is not None and stat[1] == self.start_ticks and stat[0] != "Z"


def _read_stat(pid: int) -> tuple[str, int] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    rest = raw[raw.rindex(")") + 2:].split()
    return rest[0], int(rest[19])


def spawn(argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> tuple[subprocess.Popen, ProcessIdentity]:
    """Run ARGV in its own session with output appended to LOG_PATH."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} starting: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, env=None if env is None else dict(env), cwd=cwd,
        )
    identity = ProcessIdentity.of(proc.pid)
    if identity is None:
        # Exited before we could read /proc: keep a record that never matches.
        identity = ProcessIdentity(proc.pid, -1)
    return proc, identity


def terminate(identity: ProcessIdentity, timeout: float = 20.0) -> str:
    """SIGTERM, wait, then SIGKILL. Returns how it ended."""
    if not identity.alive():
        return "already gone"
    try:
        os.kill(identity.pid, signal.SIGTERM)
    except ProcessLookupError:
        return "already gone"
    _reap(identity.pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(identity.pid)
        if not identity.alive():
            return "stopped"
        time.sleep(0.1)
    try:
        os.kill(identity.pid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped"
    for _ in range(50):
        _reap(identity.pid)
        if not identity.alive():
            break
        time.sleep(0.1)
    return "killed after timeout"


def _reap(pid: int) -> None:
    # Collects the exit status when the process is our own child (in-process `up`).
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def last_lines(path: Path, count: int) -> list[str]:
    """The last COUNT lines of a log file (reads at most its last 64 KiB); [] when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return data.splitlines()[-count:]


def tail(path: Path, lines: int = 15) -> str:
    found = last_lines(path, lines)
    return "\n".join(found) if found else "(no log)"
