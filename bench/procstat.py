"""What the benchmarks read about a process from /proc: CPU time and memory."""
from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU time of PID so far; with CHILDREN, plus that of its children it has reaped."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, name: str) -> int:
    """A memory line of /proc/PID/status in KiB, e.g. VmRSS (resident now) or VmHWM (peak resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0
