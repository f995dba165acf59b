"""Registry failures as a small hierarchy: callers catch meaning, not HTTP status numbers.

Each exception keeps the registry's own error code (`MANIFEST_UNKNOWN`, `DENIED`,
...) so a log line or a CLI message can say exactly what the registry said.
"""
from __future__ import annotations

from typing import Any

import requests

from asci_core.errors import EXIT_USAGE, AsciError


class RegistryError(AsciError):
    """Base of every registry failure. `code` is the registry's own code when it gave one."""

    def __init__(self, message: str, *, code: str = "", status: int = 0, detail: Any = None):
        self.message = message
        self.code = code
        self.status = status
        self.detail = detail
        super().__init__(f"{code}: {message}" if code else message)

    def one_line(self) -> str:
        return f"{self.message} [{self.code}]" if self.code else self.message


class RegistryUnavailable(RegistryError):
    """No answer, a timeout, a 5xx, or a registry in read-only maintenance."""


class Unauthorized(RegistryError):
    """Missing or wrong credentials (HTTP 401)."""


class Denied(RegistryError):
    """Authenticated, but the user's role does not allow this action."""


class NotFound(RegistryError):
    """Unknown repository, tag, manifest or blob."""


class InvalidReference(RegistryError):
    """A repository name, tag or digest that is not well formed (caught before asking, or by the registry)."""

    exit_code = EXIT_USAGE

    def one_line(self) -> str:
        return self.message


class Unsupported(RegistryError):
    """The registry refuses the operation itself (e.g. deletes disabled, unknown manifest type)."""


_BY_CODE: dict[str, type[RegistryError]] = {
    "UNAUTHORIZED": Unauthorized,
    "DENIED": Denied,
    "NAME_UNKNOWN": NotFound,
    "MANIFEST_UNKNOWN": NotFound,
    "BLOB_UNKNOWN": NotFound,
    "BLOB_UPLOAD_UNKNOWN": NotFound,
    "NAME_INVALID": InvalidReference,
    "TAG_INVALID": InvalidReference,
    "DIGEST_INVALID": InvalidReference,
    "UNSUPPORTED": Unsupported,
    "UNAVAILABLE": RegistryUnavailable,
    "TOOMANYREQUESTS": RegistryUnavailable,
}

_BY_STATUS: dict[int, type[RegistryError]] = {
    401: Unauthorized,
    403: Denied,
    404: NotFound,
    405: Unsupported,
}


def error_from_response(resp: requests.Response, what: str) -> RegistryError:
    """Turn an error answer into the matching exception; WHAT names the request for the message."""
    code, message, detail = "", "", None
    try:
        errors = resp.json().get("errors") or []
    except ValueError:
        errors = []
    if errors and isinstance(errors[0], dict):
        code = str(errors[0].get("code") or "")
        message = str(errors[0].get("message") or "")
        detail = errors[0].get("detail")
    cls = _BY_CODE.get(code) or _BY_STATUS.get(resp.status_code)
    if cls is None:
        cls = RegistryUnavailable if resp.status_code >= 500 else RegistryError
    # Distribution in read-only mode answers writes with 405 UNSUPPORTED and this text.
    if code == "UNSUPPORTED" and "read-only" in message.lower():
        cls = RegistryUnavailable
    text = f"{what}: {message or resp.reason or 'failed'} (HTTP {resp.status_code})"
    return cls(text, code=code, status=resp.status_code, detail=detail)
