"""Bearer tokens of the sessions API: who a caller is and whom it may act for.

- The admin token: made by `asci serve` on first start in a 0600 file in a 0700
  folder (the launcher's workdir); the `asci` CLI reads it from there. It acts for
  any user, and without a user it sees every session.
- Configured tokens (`launcher_api.tokens`): a user's token acts only as that
  user; a service's token (the browser proxy) acts for any user it names.

Only SHA-256 digests of the tokens are kept in memory: tokens are long random
strings, so a plain digest is not open to guessing, and every check compares the
digest against all known ones with a constant-time compare, with no early exit.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from asci_core.errors import AsciError

ADMIN = "admin"
PREFIX = "/api/v1"
# The user an admin or service token acts as; a user's own token may name only its user.
ACT_AS_HEADER = "X-Asci-User"


class TokenFileError(AsciError):
    """The admin token file is missing, unreadable or readable by others."""


@dataclass(frozen=True)
class Principal:
    """Who called: NAME, and whether it may act for other users (admin or service)."""

    name: str
    acts_for_anyone: bool
    admin: bool = False


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenRing:
    def __init__(self, entries: Iterable[tuple[str, Principal]]):
        self._entries = [(digest(token), who) for token, who in entries]

    def identify(self, token: str) -> Principal | None:
        presented = digest(token)
        found = None
        for known, who in self._entries:
            if hmac.compare_digest(known, presented) and found is None:
                found = who
        return found


def admin_token_path(config: Any) -> Path:
    chosen = config.launcher_api.admin_token_file
    if chosen is not None:
        return chosen
    workdir = config.launcher.workdir or Path(config.stack.state_dir) / "launcher"
    return workdir / "api-token"


def ensure_admin_token(path: Path) -> str:
    """The admin token in PATH, made first if there is none (0600 file, 0700 folder)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_admin_token(path)
    with os.fdopen(fd, "w") as f:
        token = secrets.token_urlsafe(32)
        f.write(token + "\n")
    return token


def read_admin_token(path: Path) -> str:
    try:
        st = path.stat()
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise TokenFileError(f"{path} is readable by other users: `chmod 600 {path}`")
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise TokenFileError(f"no API token at {path}: `asci serve` makes it when it first starts") from None
    except PermissionError:
        raise TokenFileError(f"{path} cannot be read: run as the user that runs `asci serve`") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TokenFileError(f"{path} cannot be read ({exc})") from None
    if len(token) < 32:
        raise TokenFileError(f"{path} holds no usable token: remove it and restart `asci serve`")
    return token


def token_ring(config: Any, admin_token: str) -> TokenRing:
    entries = [(admin_token, Principal(ADMIN, True, admin=True))]
    entries += [(t.token.reveal(), Principal(t.user, t.service)) for t in config.launcher_api.tokens]
    return TokenRing(entries)
