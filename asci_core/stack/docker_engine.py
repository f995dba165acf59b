"""Docker Engine: Debian's docker.io, started as `dockerd` when no engine answers."""
from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any, Iterator

import docker
import docker.errors
import requests.exceptions

from asci_core.stack.part import Part, Probe, Started, StartError


def docker_client(address: str | os.PathLike[str], timeout: float = 120, version: str | None = None,
                  tls: Any = False) -> docker.DockerClient:
    """The one factory of Docker clients (the caller closes the client).

    ADDRESS is a socket path or an engine URL (unix://, tcp://). VERSION, when known, spares the
    client its API-version round trip, which also fails construction against a dead engine.
    """
    text = os.fspath(address)
    url = text if "://" in text else f"unix://{text}"
    client = docker.DockerClient(base_url=url, timeout=timeout, version=version, tls=tls)
    if tls:
        # requests would otherwise verify against REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE when set, in place
        # of the engine's own CA, and send engine traffic through an environment proxy.
        client.api.trust_env = False
    return client


@contextlib.contextmanager
def engine_client(config, timeout: int = 120) -> Iterator[docker.DockerClient]:
    """The engine configured for the stack (`stack.docker.socket`), closed after use."""
    client = docker_client(config.stack.docker.socket, timeout=timeout)
    try:
        yield client
    finally:
        client.close()


class DockerEnginePart(Part):
    name = "docker"
    order = 20

    @property
    def managed(self) -> bool:
        return self.config.stack.docker.managed

    @property
    def address(self) -> str:
        return f"unix://{self.config.stack.docker.socket}"

    @property
    def start_timeout(self) -> float:
        return self.config.stack.docker.start_timeout

    def probe(self) -> Probe:
        if not self.config.stack.docker.socket.exists():
            return Probe(False, detail="no socket")
        try:
            with engine_client(self.config, timeout=3) as client:
                v = client.version()
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            return Probe(False, detail=f"no answer ({type(exc).__name__})")
        return Probe(True, version=f"{v.get('Version')} (API {v.get('ApiVersion')})")

    def start(self) -> Started:
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise StartError("dockerd is not installed (Debian package docker.io; run scripts/setup.sh)")
        socket = self.config.stack.docker.socket
        # A socket left by a dead engine makes dockerd refuse to start.
        if socket.exists() and not socket.is_dir():
            socket.unlink()
        return self.launch([dockerd, "--host", f"unix://{socket}"])
