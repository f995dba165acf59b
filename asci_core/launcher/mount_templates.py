"""Per-user mount templates: `/data/{user}` → `/data/alice`, never outside `/data`.

A template's root is its leading run of fixed path components (`/data` for
`/data/{user}/work`). Templates are checked twice: at configuration load for
mistakes visible in the text (relative, `..`, unknown placeholder, no fixed root),
and at use, after substitution, because a directory other than the local users
file (LDAP) may hand us a name such as `..` or `a/b`.
"""
from __future__ import annotations

from asci_core.errors import AsciError, UsageError

import posixpath
import re
import string
from dataclasses import dataclass

PLACEHOLDERS = ("user", "uid", "gid")


class MountTemplateError(UsageError, ValueError):
    pass


def template_problem(template: str) -> str | None:
    """Why TEMPLATE can never be a safe mount path, or None."""
    if not template.startswith("/"):
        return f"expected an absolute path template such as /data/{{user}}, got {template!r}"
    try:
        fields = [f for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        return f"not a valid template ({exc}): {template!r}"
    for name in fields:
        if name not in PLACEHOLDERS:
            allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            return f"unknown placeholder {{{name}}} (allowed: {allowed}) in {template!r}"
    parts = template.split("/")
    if "//" in template:
        return f"empty path component ('//') in {template!r}"
    if any(p in ("..", ".") for p in parts):
        return f"'.' and '..' are not allowed in a mount path: {template!r}"
    if fields and template_root(template) == "/":
        return f"the first directory must be fixed (e.g. /data/{{user}}), not a placeholder: {template!r}"
    if template.rstrip("/") in ("", "/proc", "/sys", "/dev", "/etc"):
        return f"mounting {template!r} is not allowed"
    return None


def template_root(template: str) -> str:
    fixed: list[str] = []
    for part in template.strip("/").split("/"):
        if "{" in part:
            break
        fixed.append(part)
    return "/" + "/".join(fixed)


@dataclass(frozen=True)
class Substitution:
    user: str
    uid: int
    gid: int


def render(template: str, values: Substitution) -> str:
    """TEMPLATE with VALUES, refused if the result leaves the template's root."""
    problem = template_problem(template)
    if problem:
        raise MountTemplateError(problem)
    rendered = template.format(user=values.user, uid=values.uid, gid=values.gid)
    root = template_root(template)
    if values.user in ("", ".", "..") or "/" in values.user or "\0" in values.user:
        raise MountTemplateError(f"mount path {template!r} for user {values.user!r} becomes {rendered!r}: "
                                 f"that user name cannot be a path component, the path would leave {root}")
    normal = posixpath.normpath(rendered)
    # A component that normpath would fold ('..', '.', '', or one holding '/') changes what the
    # template meant even when the result stays below the root: refuse it as well.
    if normal != rendered.rstrip("/") or re.search(r"//", rendered):
        raise MountTemplateError(f"mount path {template!r} for user {values.user!r} becomes {rendered!r}, "
                                 f"which leaves its root {root}")
    if root != "/" and posixpath.commonpath([root, normal]) != root:
        raise MountTemplateError(f"mount path {template!r} for user {values.user!r} becomes {rendered!r}, "
                                 f"outside {root}")
    if len(normal.split("/")) != len(template.rstrip("/").split("/")):
        raise MountTemplateError(f"mount path {template!r} for user {values.user!r} becomes {rendered!r}: "
                                 f"a value must not contain '/'")
    return normal
