"""The interface every stack part implements: probe cheaply, start if managed."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asci_core.config import Config
from asci_core.errors import AsciError
from asci_core.stack.process import ProcessIdentity, spawn


class StartError(AsciError):
    """A part could not be started; the message says why."""


@dataclass
class Probe:
    up: bool
    version: str = ""
    detail: str = ""


@dataclass
class Started:
    """What `up` did for a part, kept in the state file so `down` can undo exactly that."""

    kind: str  # "process" or "artifact"
    pid: int = 0
    start_ticks: int = 0
    argv: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # created by us, removed on `down`
    artifacts: list[str] = field(default_factory=list)  # e.g. images built; kept on `down`
    started_at: str = ""
    proc: Any = field(default=None, repr=False, compare=False)  # the Popen while we are its parent

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.pid, self.start_ticks)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "pid": self.pid, "start_ticks": self.start_ticks, "argv": self.argv,
                "files": self.files, "artifacts": self.artifacts, "started_at": self.started_at}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Started":
        return cls(**{k: data[k] for k in ("kind", "pid", "start_ticks", "argv", "files", "artifacts", "started_at") if k in data})


class Part(ABC):
    name: str = ""
    needs: tuple[str, ...] = ()
    order: int = 100  # place in `stack up` (reversed for `down`): journald 10, docker 20, registry 30, search 40, base_image 50

    def __init__(self, config: Config):
        self.config = config
        self.state_dir = config.stack.state_dir

    @property
    def log_path(self) -> Path:
        return self.state_dir / "logs" / f"{self.name}.log"

    @property
    @abstractmethod
    def managed(self) -> bool: ...

    @property
    @abstractmethod
    def address(self) -> str: ...

    @property
    def start_timeout(self) -> float:
        return 30.0

    @abstractmethod
    def probe(self) -> Probe: ...

    @abstractmethod
    def start(self) -> Started:
        """Begin starting the part; the manager then waits for `probe()` to report it up."""

    def launch(self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
               files: list[str] | None = None) -> Started:
        proc, ident = spawn(argv, self.log_path, env=env, cwd=cwd)
        return Started(kind="process", pid=ident.pid, start_ticks=ident.start_ticks, argv=argv,
                       files=files or [], proc=proc)
