"""What is deployed right now: image references retention must never delete.

The launcher (asci_core) will one day answer this itself; until then, and as a
safety net afterwards, the answer comes from two places: the Docker engine
(images of ASCI's containers, found by label) and references listed in config.
Anything implementing `DeployedImages` can be added.

A running container is matched by content, not by the host it was pulled
through: one registry answers to `localhost:5000`, `127.0.0.1:5000` and any
alias, so a host string cannot say whether an image is ours. The engine's image
id (the config digest) and its RepoDigests (manifest digests, whatever the
host) are compared with what the registry holds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

from asci_core.errors import AsciError
from registry.errors import InvalidReference
from registry.reference import parse_reference


@dataclass(frozen=True)
class DeployedRef:
    repository: str | None  # None: any repository holding an image with this config digest
    tag: str | None
    digest: str | None
    source: str  # who says it is deployed, for the plan's "why"
    image_id: str | None = None  # the engine's image id: the config digest of the running image


class DeployedImages(Protocol):
    def deployed_refs(self) -> list[DeployedRef]: ...


class DeploymentSourceError(AsciError):
    """The deployed set cannot be known, so nothing may be deleted."""


def _ref(text: str, address: str | None, source: str, require_address: bool) -> DeployedRef | None:
    try:
        ref = parse_reference(text, default_tag=None, address=None)
    except InvalidReference:
        return None
    if ref.registry is not None and address is not None and ref.registry != address:
        return None  # another registry's image
    if require_address and ref.registry is None:
        return None  # a local or hub image, not one of ours
    return DeployedRef(ref.repository, ref.tag, ref.digest, source)


@dataclass
class ConfiguredDeployments:
    """`registry.deployed` in the config: `repo:tag`, `repo@sha256:...`, with or without the registry address."""

    refs: list[str]
    address: str | None = None

    def deployed_refs(self) -> list[DeployedRef]:
        found = (_ref(text, self.address, "listed in registry.deployed", False) for text in self.refs)
        return [r for r in found if r is not None]


@dataclass
class EngineDeployments:
    """Images of the engine's containers that carry LABEL (running, paused, restarting or about to start)."""

    client: Any  # docker.DockerClient
    address: str
    label: str = "asci.component"

    def deployed_refs(self) -> list[DeployedRef]:
        import docker.errors
        import requests

        try:
            containers = self.client.api.containers(all=True, filters={"label": self.label})
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise DeploymentSourceError(f"cannot list containers from the Docker engine ({exc})") from None
        refs: list[DeployedRef] = []
        images: dict[str, dict[str, Any]] = {}
        for c in containers:
            if c.get("State") in ("exited", "dead"):
                continue
            name = (c.get("Names") or ["?"])[0].lstrip("/")
            source = f"container {name} ({self.label}={c.get('Labels', {}).get(self.label, '')})"
            # The listing shows an image id once the tag is gone locally; the container's own
            # config keeps the reference it was created from.
            try:
                created_from = self.client.api.inspect_container(c["Id"])["Config"]["Image"]
            except docker.errors.NotFound:
                continue  # removed meanwhile: no longer deployed
            ref = _ref(created_from, self.address, source, True)
            if ref:
                refs.append(ref)
            image_id = c.get("ImageID", "")
            if image_id and image_id not in images:
                try:
                    images[image_id] = self.client.api.inspect_image(image_id)
                except docker.errors.NotFound:
                    images[image_id] = {}
            if image_id.startswith("sha256:"):
                # Survives a removed tag and a pull through another host name: the content itself.
                refs.append(DeployedRef(None, None, None, source, image_id=image_id))
            # The digest it was pulled by protects it even after its tag moved on, whichever host
            # name it was pulled through (a manifest digest names the same bytes everywhere).
            for text in images.get(image_id, {}).get("RepoDigests") or []:
                ref = _ref(text, None, source, True)
                if ref and ref.digest:
                    refs.append(DeployedRef(ref.repository, None, ref.digest, source))
        return refs


@dataclass
class DeployedSet:
    """Deployed references indexed for planning: (repo, tag) and (repo, digest) → why."""

    tags: dict[tuple[str, str], str] = field(default_factory=dict)
    digests: dict[tuple[str, str], str] = field(default_factory=dict)
    image_ids: dict[str, str] = field(default_factory=dict)  # config digest → why, in any repository

    @classmethod
    def gather(cls, sources: Iterable[DeployedImages]) -> "DeployedSet":
        found = cls()
        for source in sources:
            for ref in source.deployed_refs():
                if ref.image_id:
                    found.image_ids.setdefault(ref.image_id, ref.source)
                if ref.repository is None:
                    continue
                if ref.tag:
                    found.tags.setdefault((ref.repository, ref.tag), ref.source)
                if ref.digest:
                    found.digests.setdefault((ref.repository, ref.digest), ref.source)
        return found
