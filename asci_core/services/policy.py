"""Which tag a following service should run next: newer, a release, within its policy, never marked bad."""
from __future__ import annotations

from collections.abc import Iterable

from registry.semver import parse_version


def allowed(follow: str, current: str, candidate: str) -> bool:
    """CANDIDATE is a release newer than CURRENT inside the FOLLOW range (pinned allows nothing)."""
    if follow == "pinned":
        return False
    now, new = parse_version(current), parse_version(candidate)
    if now is None or new is None or new.is_prerelease or new.key() <= now.key():
        return False
    if follow == "patch":
        return (new.major, new.minor) == (now.major, now.minor)
    if follow == "minor":
        return new.major == now.major
    return follow == "major"


def next_tag(follow: str, current: str, tags: Iterable[str], bad: set[str]) -> str | None:
    """The highest tag CURRENT may roll forward to, or None."""
    choices = [(parse_version(t).key(), t) for t in tags if t not in bad and allowed(follow, current, t)]
    return max(choices)[1] if choices else None


def first_allowed(follow: str, configured: str, candidate: str) -> bool:
    """A service never deployed may start at CANDIDATE: its configured tag, or one its policy takes from there."""
    return candidate == configured or allowed(follow, configured, candidate)


def first_tag(follow: str, configured: str, tags: Iterable[str], bad: set[str]) -> str | None:
    """The tag a service never deployed starts at, among TAGS in the registry, or None."""
    tags = list(tags)
    newest = next_tag(follow, configured, tags, bad)
    return newest or (configured if configured in tags and configured not in bad else None)
