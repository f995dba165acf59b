"""What every component's settings module needs: `setting()`, `Secret`, `ConfigError`.

Component sections (autobuild/settings.py, asci_logging/settings.py, ...) and any
component code that handles secrets import only this module, never
asci_core.config: the configuration is composed from the components' sections
(asci_core.components), so importing it from a settings module would be a cycle.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path
from typing import Any, Callable

from asci_core.errors import EXIT_USAGE, AsciError


class ConfigError(AsciError):
    """A configuration mistake, phrased for the person who wrote the file."""

    exit_code = EXIT_USAGE

    def __init__(self, source: str, key: str, problem: str):
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")

    def one_line(self) -> str:
        return f"configuration error: {super().one_line()}"


class Secret:
    """A value that must never be printed: repr and str hide it."""

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str):
        self._value = value
        self.origin = origin

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret(from {self.origin})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


_MISSING: Any = dataclasses.MISSING


def setting(default: Any = _MISSING, *, help: str, check: Any = None,
            default_factory: Callable[[], Any] | None = None, internal: bool = False) -> Any:
    """A dataclass field carrying its help text and an optional named check from CHECKS."""
    meta = {"help": help, "check": check, "internal": internal}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _check_port(v: int) -> str | None:
    return None if 1 <= v <= 65535 else f"expected a port from 1 to 65535, got {v}"


def _check_host(v: str) -> str | None:
    if v == "localhost":
        return None
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return f"expected an IP address such as 127.0.0.1, got {v!r}"
    return None


def _check_url(v: str) -> str | None:
    return None if re.fullmatch(r"https?://[^\s/]+(/\S*)?", v) else f"expected an http(s) URL, got {v!r}"


def _check_regex(v: str) -> str | None:
    try:
        re.compile(v)
    except re.error as exc:
        return f"not a valid regular expression ({exc})"
    return None


def _check_relpath(v: str) -> str | None:
    if Path(v).is_absolute() or ".." in Path(v).parts:
        return f"expected a path inside the repository, got {v!r}"
    return None


CHECKS: dict[str, Callable[..., str | None]] = {
    "port": _check_port,
    "host": _check_host,
    "url": _check_url,
    "regex": _check_regex,
    "relpath": _check_relpath,
    "positive": lambda v: None if v > 0 else f"expected a number above 0, got {v}",
    "range": lambda v, lo, hi: None if lo <= v <= hi else f"expected a value from {lo} to {hi}, got {v}",
    "word": lambda v: None if re.fullmatch(r"[a-z][a-z0-9-]*", v) else f"expected a lower-case name, got {v!r}",
    "image": lambda v: None if re.fullmatch(r"[a-z0-9][a-z0-9._/-]*(:[\w][\w.-]{0,127})?", v)
    else f"expected an image name such as debian:bookworm, got {v!r}",
    "repo": lambda v: None if re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", v) else f"expected PROJECT/SLUG, got {v!r}",
}
