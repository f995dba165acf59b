"""Turning an environment's image into what the engine pulls: `REPOSITORY@newest` becomes the
repository's highest release tag in the facility registry, asked at each create.

A release is a semantic-version tag without a pre-release part (registry.semver decides);
`latest` and branch tags never count. Only the facility registry is asked: a `@newest` on
another host is refused, as is a repository with no release yet.
"""
from __future__ import annotations

from typing import Any

from registry.client import RegistryClient
from registry.semver import highest_release

from .errors import StartFailed
from .settings import NEWEST


def resolve(image: str, registry: Any | None, timeout: float = 10.0) -> str:
    """IMAGE as a pullable reference; REGISTRY is a registry.service.RegistryAccess (or None)."""
    if not image.endswith(NEWEST):
        return image
    repository_ref = image[: -len(NEWEST)]
    if registry is None or not repository_ref.startswith(registry.address + "/"):
        raise StartFailed(f"{image}: the newest release can only be looked up in the facility registry")
    repository = repository_ref[len(registry.address) + 1:]
    try:
        tags = RegistryClient(registry, timeout=timeout).tags(repository)
    except Exception as exc:  # noqa: BLE001 - any registry failure ends in one line
        raise StartFailed(f"{image}: the registry did not list the tags of {repository} ({exc})") from None
    tag = highest_release(tags)
    if tag is None:
        raise StartFailed(f"{image}: {repository} has no release tag yet (such as 1.4.0)")
    return f"{repository_ref}:{tag}"
