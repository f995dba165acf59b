"""Tag names from git, checked before they go anywhere near an image name or a path.

A git tag may contain almost anything; a Docker tag may not. Everything a
webhook names passes `check_tag` first, and is then only ever used as an
argument (never in a shell string), in an image reference or in a database row.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

# Docker's own grammar for a tag: 128 characters at most, no leading '.' or '-'.
DOCKER_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
SEMVER = re.compile(
    r"v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)


class TagRefused(ValueError):
    """The tag will not be built; the message says why (safe to show to the sender)."""


def check_tag(tag: str, pattern: str) -> str:
    if not tag.isascii() or not tag.isprintable():
        raise TagRefused(f"tag {tag!r} contains characters that are not printable ASCII")
    if len(tag) > 128:
        raise TagRefused(f"tag is {len(tag)} characters long; Docker allows at most 128")
    if not DOCKER_TAG.fullmatch(tag):
        raise TagRefused(f"tag {tag!r} is not a valid Docker tag (letters, digits, '_', '.', '-'; "
                         "not starting with '.' or '-')")
    if not re.search(pattern, tag):
        raise TagRefused(f"tag {tag!r} does not match this repository's tag filter {pattern!r}")
    return tag


@total_ordering
@dataclass(frozen=True)
class Version:
    """Semantic-version order: v1.2.10 > v1.2.9, and 1.0.0-rc.1 < 1.0.0."""

    major: int
    minor: int
    patch: int
    pre: tuple[tuple[int, int | str], ...] | None

    @classmethod
    def parse(cls, tag: str) -> "Version | None":
        m = SEMVER.fullmatch(tag)
        if m is None:
            return None
        pre = None
        if m["pre"]:
            # Numeric identifiers sort below alphanumeric ones, and numerically among themselves.
            pre = tuple((0, int(p)) if p.isdigit() else (1, p) for p in m["pre"].split("."))
        return cls(int(m["major"]), int(m["minor"]), int(m["patch"]), pre)

    def _key(self) -> tuple:
        # A release sorts above all of its pre-releases.
        return (self.major, self.minor, self.patch, self.pre is None, self.pre or ())

    def __lt__(self, other: "Version") -> bool:
        return self._key() < other._key()


def highest(tags: list[str]) -> str | None:
    """The highest released semantic version among TAGS (pre-releases never become `latest`)."""
    versions = [(v, t) for t in tags if (v := Version.parse(t)) is not None and v.pre is None]
    return max(versions)[1] if versions else None
