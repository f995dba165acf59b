"""Shared by the services tests: taking a test service away entirely (its versions, front and network)."""
from __future__ import annotations

from typing import Any

import docker.errors


def remove_service(docker_client: Any, name: str) -> None:
    for c in docker_client.containers.list(all=True, filters={"label": f"asci.service={name}"}):
        c.remove(force=True)
    for c in docker_client.containers.list(all=True, filters={"label": f"asci.service-front={name}"}):
        c.remove(force=True)
    for network in docker_client.networks.list(names=[f"asci-svc-{name}"]):
        try:
            network.remove()
        except docker.errors.NotFound:
            pass
