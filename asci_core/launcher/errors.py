"""What can go wrong for a caller, each with the HTTP status the API should answer with."""
from __future__ import annotations

from asci_core.errors import AsciError, UsageError


class LauncherError(AsciError):
    """Carries the HTTP status the API answers with; the CLI uses exit_code (4xx: usage, 5xx: failure)."""

    status = 400
    exit_code = UsageError.exit_code


class BadRequest(LauncherError):
    status = 400


class NotAllowed(LauncherError):
    status = 403


class SessionNotFound(LauncherError):
    """Also the answer for another user's session: existence is not revealed."""

    status = 404


class UnknownEnvironment(LauncherError):
    status = 404


class Conflict(LauncherError):
    status = 409


class LimitReached(LauncherError):
    status = 429


class NoCapacity(LauncherError):
    status = 503
    exit_code = AsciError.exit_code


class NodeUnavailable(LauncherError):
    status = 503
    exit_code = AsciError.exit_code


class StartFailed(LauncherError):
    status = 503
    exit_code = AsciError.exit_code
