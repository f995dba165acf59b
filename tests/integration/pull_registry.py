"""A registry of the tests' own (a sandbox: own state dir and port) with a real pull-only account,
made by `asci registry users add NAME --role pull` as an operator would, and images pushed into
it with the sandbox's admin account (test tooling)."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import docker
import requests

from asci_core.config import Secret
from registry.service import RegistryAccess
from tests.support.sandbox import Sandbox

ASCI = str(Path(sys.executable).with_name("asci"))
PULLER = "session-puller"


@dataclass
class PullRegistry:
    sandbox: Sandbox
    puller: RegistryAccess  # what the launcher is configured with

    @property
    def address(self) -> str:
        return self.sandbox.address

    def ports(self) -> list[int]:
        """The registry's port and its token service's (the engines follow the Bearer realm there)."""
        challenge = requests.get(f"{self.sandbox.access.url}/v2/", timeout=5).headers["WWW-Authenticate"]
        realm = challenge.split('realm="', 1)[1].split('"', 1)[0]
        return [int(self.address.rsplit(":", 1)[1]), int(realm.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])]

    def with_password(self, password: str) -> RegistryAccess:
        return replace(self.puller, password=Secret(password, "test"))

    def push(self, client: docker.DockerClient, source: str, repository: str, tag: str = "1") -> str:
        """SOURCE pushed as REPOSITORY:TAG with the admin account; the local tag is removed again,
        so an engine that had only SOURCE lacks the pushed reference."""
        ref = f"{self.address}/{repository}"
        client.images.get(source).tag(ref, tag)
        try:
            lines = list(client.api.push(ref, tag, stream=True, decode=True,
                                         auth_config=self.sandbox.access.auth_config()))
        finally:
            client.images.remove(f"{ref}:{tag}")
        errors = [line["error"] for line in lines if "error" in line]
        assert not errors, errors
        return f"{ref}:{tag}"


def start(stack, directory: Path) -> PullRegistry:
    sandbox = Sandbox(stack.config, directory).start()
    try:
        added = subprocess.run([ASCI, "-c", str(sandbox.config_path), "--log-level", "warning", "registry", "users",
                                "add", PULLER, "--role", "pull"], capture_output=True, text=True, timeout=120)
        assert added.returncode == 0, added.stderr
        password = added.stdout.strip().splitlines()[-1]
    except BaseException:
        sandbox.stop()
        raise
    return PullRegistry(sandbox, RegistryAccess(sandbox.access.url, sandbox.address, PULLER,
                                                Secret(password, "pull account")))
