"""A registry of one's own: a managed registry with its own state dir and port.

For tests and benchmarks that must restart, reconfigure, fill or garbage-collect
a registry without touching the one the rest of the stack shares. The sandbox
reuses the shared stack's Docker engine and base images.
"""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import yaml

from asci_core.config import Config, load_config
from asci_core.stack.manager import StackManager
from registry.client import RegistryClient
from registry.service import RegistryAccess, RegistryPart, registry_access
from tests.support.side_config import shared_services


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sandbox:
    def __init__(self, base: Config, directory: Path, registry: dict[str, Any] | None = None,
                 stack_registry: dict[str, Any] | None = None):
        self.directory = directory
        self.port = _free_port()
        self.settings: dict[str, Any] = {
            "stack": {
                **shared_services(base),
                "state_dir": str(directory / "state"),
                "registry": {"port": self.port, **(stack_registry or {})},
            },
            "registry": registry or {},
        }
        self.config_path = self.write_config(self.settings, "asci.yaml")
        self.config: Config = load_config(self.config_path)

    def write_config(self, settings: dict[str, Any], name: str) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / name
        path.write_text(yaml.safe_dump(settings))
        return path

    def variant(self, name: str, registry: dict[str, Any]) -> Path:
        """Another config file for this same registry, with a different `registry:` section."""
        return self.write_config({**self.settings, "registry": registry}, name)

    @property
    def access(self) -> RegistryAccess:
        return registry_access(self.config)

    @property
    def address(self) -> str:
        return self.access.address

    @property
    def log_path(self) -> Path:
        return self.config.stack.state_dir / "logs" / "registry.log"

    def client(self, **kwargs: Any) -> RegistryClient:
        return RegistryClient(self.access, **kwargs)

    def _manager(self) -> StackManager:
        return StackManager(self.config, parts=[RegistryPart(self.config)])

    def start(self) -> "Sandbox":
        report = self._manager().up()
        if not report.ok:
            raise RuntimeError(f"sandbox registry did not start: {report.parts[0].detail}")
        return self

    def stop(self) -> None:
        self._manager().down()

    def __enter__(self) -> "Sandbox":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
