"""Image references (`repo:tag`, `repo@sha256:...`, optionally prefixed by a registry address).

Checked locally with the Distribution grammar, so a typo fails with a clear line
before any request is made and never reaches a delete.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from asci_core.image_reference import split_image_reference
from registry.errors import InvalidReference

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
# Docker's grammar for a tag, ASCII only (a bare \w would also let Unicode letters through).
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
DIGEST_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    repository: str
    tag: str | None = None
    digest: str | None = None
    registry: str | None = None

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when pinned, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}" if self.registry else self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def check_repository(name: str) -> str:
    if not name or len(name) > _MAX_NAME or not NAME_RE.fullmatch(name):
        raise InvalidReference(f"{name!r} is not a valid repository name "
                               "(lower-case letters, digits and . _ - separators, parts joined by /)")
    return name


def check_tag(tag: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise InvalidReference(f"{tag!r} is not a valid tag (letters, digits, _ . -, at most 128, not starting with . or -)")
    return tag


def check_digest(digest: str) -> str:
    if not DIGEST_RE.fullmatch(digest):
        raise InvalidReference(f"{digest!r} is not a valid digest (expected e.g. sha256:<64 hex digits>)")
    return digest


def parse_reference(text: str, *, default_tag: str | None = "latest", address: str | None = None) -> Reference:
    """Parse TEXT; a leading registry address is accepted only when it equals ADDRESS (when given)."""
    raw = text.strip()
    if not raw:
        raise InvalidReference("empty image reference")
    registry, repository, tag, digest = split_image_reference(raw)
    if registry is not None and address is not None and registry != address:
        raise InvalidReference(f"{text!r} names registry {registry}, but this registry is {address}")
    if digest is not None:
        check_digest(digest)
    if tag is not None:
        check_tag(tag)
    check_repository(repository)
    if tag is None and digest is None:
        tag = default_tag
    return Reference(repository, tag, digest, registry)
