"""Version order for image tags: `v1.2.10` after `v1.2.9`, `v2.0.0-rc.1` before `v2.0.0`.

Semantic Versioning 2.0 precedence, relaxed the way image tags are written: an
optional `v`, and `1` or `1.2` read as `1.0.0` / `1.2.0`. Build metadata cannot
occur (`+` is not allowed in a tag). Anything else (`latest`, `main-3f2a1c`) is
not a version.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_VERSION_RE = re.compile(r"[vV]?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?")


@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()

    @property
    def is_prerelease(self) -> bool:
        return bool(self.prerelease)

    def key(self) -> tuple:
        """Sort key: a release outranks its pre-releases; numeric identifiers rank below alphanumeric ones."""
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        return f"{core}-{'.'.join(self.prerelease)}" if self.prerelease else core


def parse_version(tag: str) -> Version | None:
    m = _VERSION_RE.fullmatch(tag)
    if m is None:
        return None
    major, minor, patch, pre = m.groups()
    return Version(int(major), int(minor or 0), int(patch or 0), tuple(pre.split(".")) if pre else ())


def sort_tags(tags: list[str]) -> list[str]:
    """Versions oldest to newest, then every other tag alphabetically (for listings)."""
    versions = [(parse_version(t), t) for t in tags]
    ordered = sorted(((v.key(), t) for v, t in versions if v is not None))
    return [t for _, t in ordered] + sorted(t for v, t in versions if v is None)


def highest_release(tags: list[str]) -> str | None:
    """The highest released version among TAGS: pre-releases and non-versions never become `latest`."""
    releases = [(v.key(), t) for t in tags if (v := parse_version(t)) is not None and not v.is_prerelease]
    return max(releases)[1] if releases else None
