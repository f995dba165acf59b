"""The one parser of image references: `[registry/]repository[:tag][@digest]`.

It only splits; whoever needs a strict check (registry.reference, before a
request or a delete) validates the parts with the Distribution grammar. The
first path component is a registry address only when it looks like one (it has
a `.` or a `:`, or is `localhost`), as Docker decides it.
"""
from __future__ import annotations

from typing import NamedTuple


class ImageReference(NamedTuple):
    registry: str | None
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """The repository with its registry address, as `docker pull` takes it without the tag."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository


def looks_like_registry(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost"


def split_image_reference(text: str) -> ImageReference:
    raw = text
    registry: str | None = None
    first, slash, rest = raw.partition("/")
    if slash and looks_like_registry(first):
        registry, raw = first, rest
    digest: str | None = None
    if "@" in raw:
        raw, digest = raw.split("@", 1)
    tag: str | None = None
    name, colon, maybe_tag = raw.rpartition(":")
    if colon and "/" not in maybe_tag:
        raw, tag = name, maybe_tag
    return ImageReference(registry, raw, tag, digest)


def name_and_tag(text: str, default_tag: str = "latest") -> tuple[str, str]:
    """("registry:5000/bl/base", "v1") from "registry:5000/bl/base:v1"; no tag means DEFAULT_TAG; a digest is dropped."""
    ref = split_image_reference(text)
    return ref.name, ref.tag or default_tag
