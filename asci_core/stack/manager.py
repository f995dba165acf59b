"""`asci stack up | down | status`: start what is missing, stop only what we started."""
from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass, field
from pathlib import Path

from asci_core.config import Config
from asci_core.jsonlog import get_logger
from asci_core.stack.part import Part, Probe, Started, StartError
from asci_core.stack.process import tail, terminate
from asci_core.stack.state import StackState

log = get_logger("stack")


@dataclass
class PartReport:
    name: str
    up: bool
    address: str
    version: str = ""
    started_by: str = ""  # "asci (pid N)", "asci (built)", "external" or ""
    action: str = ""  # what this call did: "started", "already up", "failed", "stopped", ...
    detail: str = ""
    seconds: float = 0.0

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class StackReport:
    parts: list[PartReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(p.up for p in self.parts)

    @property
    def started(self) -> list[str]:
        return [p.name for p in self.parts if p.action == "started"]


def default_parts(config: Config) -> list[Part]:
    """The core parts and every component's (asci_core.components), in `Part.order`."""
    # Imported here so `asci --version` does not pay for the docker SDK.
    from asci_core.components import components
    from asci_core.stack.base_image import BaseImagePart
    from asci_core.stack.docker_engine import DockerEnginePart
    from asci_core.stack.journald import JournaldPart
    from asci_core.stack.search_engine import SearchEnginePart

    parts: list[Part] = [JournaldPart(config), DockerEnginePart(config), SearchEnginePart(config),
                         BaseImagePart(config)]
    for component in components():
        if component.stack_parts is not None:
            parts.extend(component.stack_parts(config))
    return sorted(parts, key=lambda p: p.order)


class StackManager:
    def __init__(self, config: Config, parts: list[Part] | None = None):
        self.config = config
        self.parts = parts if parts is not None else default_parts(config)
        self.state = StackState(config.stack.state_dir)

    def _owner(self, part: Part, records: dict[str, Started], probe: Probe) -> str:
        rec = records.get(part.name)
        if rec is None:
            return "external" if probe.up else ""
        if rec.kind == "artifact":
            return "asci (built)"
        return f"asci (pid {rec.pid})" if rec.identity.alive() else ""

    def _forget_dead(self, records: dict[str, Started]) -> dict[str, Started]:
        return {n: r for n, r in records.items() if r.kind != "process" or r.identity.alive()}

    def status(self) -> StackReport:
        records = self._forget_dead(self.state.load())
        report = StackReport()
        for part in self.parts:
            probe = part.probe()
            report.parts.append(PartReport(part.name, probe.up, part.address, probe.version,
                                           self._owner(part, records, probe), detail=probe.detail))
        return report

    def up(self) -> StackReport:
        report = StackReport()
        with self.state.locked():
            loaded = self.state.load()
            records = self._forget_dead(loaded)
            for name in loaded.keys() - records.keys():
                # A process we started died without `down` (crash, reboot): tidy what it left behind.
                self._remove_files(loaded[name])
            self.state.save(records)
            failed: set[str] = set()
            for part in self.parts:
                t0 = time.monotonic()
                pr = self._up_one(part, records, failed)
                pr.seconds = round(time.monotonic() - t0, 3)
                if not pr.up:
                    failed.add(part.name)
                report.parts.append(pr)
                self.state.save(records)
        return report

    def _up_one(self, part: Part, records: dict[str, Started], failed: set[str]) -> PartReport:
        probe = part.probe()
        if probe.up:
            return PartReport(part.name, True, part.address, probe.version,
                              self._owner(part, records, probe), action="already up")
        blocked = [n for n in part.needs if n in failed]
        if blocked:
            return PartReport(part.name, False, part.address, action="skipped",
                              detail=f"needs {', '.join(blocked)}, which is not up")
        if not part.managed:
            return PartReport(part.name, False, part.address, action="failed",
                              detail=f"not answering and not managed by asci ({probe.detail or 'down'})")
        log.info("starting", part=part.name, address=part.address)
        records.pop(part.name, None)
        try:
            started = part.start()
        except StartError as exc:
            return PartReport(part.name, False, part.address, action="failed",
                              detail=f"{exc}\n--- last lines of {part.log_path}:\n{tail(part.log_path)}")
        started.started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        # Recorded before waiting, so an interrupted `up` still lets `down` find it.
        records[part.name] = started
        self.state.save(records)
        probe = self._wait_ready(part, started)
        if not probe.up:
            if started.kind == "process":
                terminate(started.identity, timeout=5)
            self._remove_files(started)
            records.pop(part.name, None)
            return PartReport(part.name, False, part.address, action="failed",
                              detail=f"{probe.detail}\n--- last lines of {part.log_path}:\n{tail(part.log_path)}")
        log.info("started", part=part.name, address=part.address, version=probe.version, pid=started.pid or None)
        return PartReport(part.name, True, part.address, probe.version, self._owner(part, records, probe),
                          action="started")

    def _wait_ready(self, part: Part, started: Started) -> Probe:
        deadline = time.monotonic() + part.start_timeout
        delay = 0.05
        while True:
            probe = part.probe()
            if probe.up:
                return probe
            if started.kind == "process" and not started.identity.alive():
                code = started.proc.poll() if started.proc is not None else None
                return Probe(False, detail=f"exited during start-up (exit code {code})")
            if time.monotonic() > deadline:
                return Probe(False, detail=f"not ready after {part.start_timeout:.0f} s ({probe.detail or 'no answer'})")
            time.sleep(delay)
            delay = min(delay * 1.5, 1.0)

    def down(self) -> StackReport:
        report = StackReport()
        with self.state.locked():
            records = self.state.load()
            for part in reversed(self.parts):
                rec = records.get(part.name)
                if rec is None or rec.kind != "process":
                    # Built artifacts (images) are data: they stay, and so does the record of who made them.
                    continue
                del records[part.name]
                how = terminate(rec.identity)
                log.info("stopped", part=part.name, pid=rec.pid, how=how)
                self._remove_files(rec)
                report.parts.append(PartReport(part.name, False, part.address, action=how))
                self.state.save(records)
        return report

    @staticmethod
    def _remove_files(started: Started) -> None:
        for name in started.files:
            Path(name).unlink(missing_ok=True)
