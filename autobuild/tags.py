"""Tag names from git, checked before they go anywhere near an image name or a path.

A git tag may contain almost anything; a Docker tag may not. Everything a
webhook names passes `check_tag` first, and is then only ever used as an
argument (never in a shell string), in an image reference or in a database row.
"""
from __future__ import annotations

import re

from asci_core.errors import UsageError
from registry.reference import TAG_RE


class TagRefused(UsageError, ValueError):
    """The tag will not be built; the message says why (safe to show to the sender)."""


def check_tag(tag: str, pattern: str) -> str:
    if not tag.isascii() or not tag.isprintable():
        raise TagRefused(f"tag {tag!r} contains characters that are not printable ASCII")
    if len(tag) > 128:
        raise TagRefused(f"tag is {len(tag)} characters long; Docker allows at most 128")
    if not TAG_RE.fullmatch(tag):
        raise TagRefused(f"tag {tag!r} is not a valid Docker tag (letters, digits, '_', '.', '-'; "
                         "not starting with '.' or '-')")
    if not re.search(pattern, tag):
        raise TagRefused(f"tag {tag!r} does not match this repository's tag filter {pattern!r}")
    return tag
