"""journald: Debian's systemd-journald run standalone when no journal answers.

Hosts run by systemd already have journald; containers and CI machines often do
not, and then Docker's journald log driver fails every `docker run`.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from asci_core.stack.part import Part, Probe, Started, StartError

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
# Only present while we run journald ourselves: removed again by `asci stack down`.
DROP_IN = Path("/etc/systemd/journald.conf.d/60-asci-standalone.conf")
DROP_IN_TEXT = """\
# Written by `asci stack up` for a standalone journald; removed by `asci stack down`.
[Journal]
Storage=volatile
ReadKMsg=no
RateLimitIntervalSec=0
"""


class JournaldPart(Part):
    name = "journald"
    order = 10

    @property
    def managed(self) -> bool:
        return self.config.stack.journald.managed

    @property
    def address(self) -> str:
        return f"unix://{JOURNAL_SOCKET}"

    @property
    def start_timeout(self) -> float:
        return self.config.stack.journald.start_timeout

    def probe(self) -> Probe:
        if not JOURNAL_SOCKET.exists():
            return Probe(False, detail="no journal socket")
        try:
            # Succeeds only when a live journald answers on its varlink socket.
            subprocess.run(["journalctl", "--sync"], check=True, capture_output=True, timeout=5)
        except (subprocess.SubprocessError, OSError) as exc:
            return Probe(False, detail=f"journalctl --sync failed ({type(exc).__name__})")
        return Probe(True, version=_version())

    def start(self) -> Started:
        binary = self.config.stack.journald.binary
        if not binary.exists():
            raise StartError(f"{binary} not found (Debian package systemd)")
        files: list[str] = []
        if not DROP_IN.exists():
            DROP_IN.parent.mkdir(parents=True, exist_ok=True)
            DROP_IN.write_text(DROP_IN_TEXT)
            files.append(str(DROP_IN))
        # No arguments: journald takes any argument as a journal namespace.
        return self.launch([str(binary)], files=files)


def _version() -> str:
    try:
        out = subprocess.run(["journalctl", "--version"], capture_output=True, text=True, timeout=5).stdout
    except (subprocess.SubprocessError, OSError):
        return ""
    return out.splitlines()[0] if out else ""
