"""Garbage collection of the managed registry's storage, done safely.

`docker-registry garbage-collect` must not race a push: a blob uploaded but not
yet referenced by a manifest would be swept. Distribution 2.8 cannot switch to
read-only at run time, so the registry this state dir started is restarted
read-only (pulls keep working), collected, and restarted writable. A registry
that is down is collected as it is; one someone else started is refused.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from asci_core.config import Config
from asci_core.errors import AsciError
from asci_core.jsonlog import get_logger
from asci_core.stack.manager import StackManager
from asci_core.stack.state import StackState
from registry.service import RegistryPart, registry_binary, registry_dir
from registry.users import write_private

log = get_logger("registry")


class GcError(AsciError):
    """Garbage collection could not run safely; nothing was collected."""


@dataclass(frozen=True)
class GcResult:
    bytes_before: int
    bytes_after: int
    blobs_deleted: int
    seconds: float
    restarted: bool

    @property
    def freed(self) -> int:
        return max(self.bytes_before - self.bytes_after, 0)

    def to_json(self) -> dict[str, object]:
        return {"bytes_before": self.bytes_before, "bytes_after": self.bytes_after, "bytes_freed": self.freed,
                "blobs_deleted": self.blobs_deleted, "seconds": round(self.seconds, 3),
                "registry_restarted": self.restarted}


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk under PATH (like `du -s --bytes` of blocks; hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, dirs, files in os.walk(path):
        for name in files + dirs:
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total


def data_dir(config: Config) -> Path:
    return registry_dir(config) / "data"


def _gc_config(config: Config) -> Path:
    # Only storage matters to the collector; a config of its own avoids depending on how the server runs.
    path = registry_dir(config) / "gc.yml"
    write_private(path, yaml.safe_dump({"version": 0.1, "storage": {
        "filesystem": {"rootdirectory": str(data_dir(config))}, "delete": {"enabled": True}}}))
    return path


def _restart(config: Config, read_only: bool) -> None:
    manager = StackManager(config, parts=[RegistryPart(config, read_only=read_only)])
    manager.down()
    report = manager.up()
    if not report.ok:
        detail = report.parts[0].detail if report.parts else ""
        raise GcError(f"registry did not come back {'read-only' if read_only else 'writable'}: {detail}")


def _ours_running(config: Config) -> bool | None:
    """True: running and started by this state dir; False: not running; None: running, started elsewhere."""
    part = RegistryPart(config)
    record = StackState(config.stack.state_dir).load().get("registry")
    ours = record is not None and record.kind == "process" and record.identity.alive()
    if ours:
        return True
    return None if part.probe().up else False


def garbage_collect(config: Config) -> GcResult:
    if not config.stack.registry.managed:
        raise GcError("stack.registry.managed is false: garbage collection must run on the host that holds "
                      "the registry's storage")
    state = _ours_running(config)
    if state is None:
        raise GcError(f"the registry at {RegistryPart(config).address} is running but was not started by this "
                      f"ASCI state dir ({config.stack.state_dir}); collecting under it could corrupt pushes")
    data = data_dir(config)
    if not data.exists():
        return GcResult(0, 0, 0, 0.0, False)
    t0 = time.monotonic()
    before = disk_usage(data)
    if state:
        _restart(config, read_only=True)
    try:
        argv = [registry_binary(), "garbage-collect", str(_gc_config(config))]
        try:
            run = subprocess.run(argv, capture_output=True, text=True, timeout=config.registry.gc_timeout)
        except subprocess.TimeoutExpired:
            raise GcError(f"garbage collection took longer than {config.registry.gc_timeout:g} s") from None
        if run.returncode != 0:
            last = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["no output"]
            raise GcError(f"docker-registry garbage-collect failed (exit {run.returncode}): {last[0]}")
    finally:
        if state:
            _restart(config, read_only=False)
    m = re.search(r"(\d+) blobs and (\d+) manifests eligible for deletion", run.stdout)
    blobs = int(m.group(1)) if m else 0
    result = GcResult(before, disk_usage(data), blobs, time.monotonic() - t0, bool(state))
    log.info("registry garbage collected", **result.to_json())
    return result
