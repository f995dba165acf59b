"""How a node gets a session's image: the facility registry's pull-only account.

`launcher.registry_username`/`registry_password` name an account with the registry's `pull`
role (`asci registry users add NAME --role pull`); without them the registry's own credentials
are used. They are sent only for images in the facility registry, never to another host. The
engines backend pulls with them when the chosen node lacks the image. Swarm gets them with the
service (the `X-Registry-Auth` of `docker service create --with-registry-auth`), so whichever node
Swarm picks pulls with this account rather than with whatever its engine is logged in to. A
refused account or a failed pull ends in one line, before any container or service exists.
"""
from __future__ import annotations

from typing import Any

import docker.errors

from .errors import StartFailed


def credentials_for(reference: str, registry: Any | None) -> dict[str, str] | None:
    """The pull account for REFERENCE: REGISTRY's (a registry.service.RegistryAccess) when the image
    is in it, else None."""
    if registry is None or not reference.startswith(registry.address + "/"):
        return None
    return registry.auth_config()


def pull(client: Any, reference: str, registry: Any | None) -> None:
    """REFERENCE onto CLIENT's node, unless it is there already."""
    try:
        client.images.get(reference)
        return
    except docker.errors.ImageNotFound:
        pass
    repository, _, tag = reference.rpartition(":")
    if "/" in tag or not repository:  # a port, not a tag
        repository, tag = reference, "latest"
    auth = credentials_for(reference, registry)
    try:
        client.images.pull(repository, tag=tag, auth_config=auth)
    except docker.errors.APIError as exc:  # an unknown image or tag is one too
        account = f" as {auth['username']!r}" if auth else " without credentials"
        raise StartFailed(f"{reference} could not be pulled{account}: {_one_line(exc)}") from None


def authorise_service(client: Any, reference: str, registry: Any | None) -> None:
    """Before CLIENT (a Swarm manager) creates a service of REFERENCE: the manager checks the pull
    account with the registry, and the SDK then sends it along with the service."""
    auth = credentials_for(reference, registry)
    if auth is None:
        return
    try:
        # reauth: always asked, never a cached answer for an account whose password changed.
        client.login(auth["username"], auth["password"], registry=registry.address, reauth=True)
    except docker.errors.APIError as exc:
        raise StartFailed(f"the registry {registry.address} refused the pull account {auth['username']!r}: "
                          f"{_one_line(exc)}") from None


def _one_line(exc: docker.errors.APIError) -> str:
    return " ".join(str(exc.explanation or exc).split())[:300]
