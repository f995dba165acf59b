"""Connect tokens: single use, bound to (user, session), short-lived, in memory only.

A token is what the viewer page presents when it opens the proxy's WebSocket. It
holds the launcher's Connection (address and one-time VNC password) so the proxy
never asks the launcher again; the browser sees only the token. `take` removes
the token whatever the outcome, so a replay — even of a refused attempt — fails.
"""
from __future__ import annotations

from asci_core.errors import AsciError

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable


class TokenRefused(AsciError):
    """Why a token cannot be used (for the log; the client only sees 403)."""


@dataclass(frozen=True)
class Grant:
    user: str
    session: str
    connection: Any  # asci_core.launcher.sessions.Connection
    expires: float

    def __repr__(self) -> str:
        return f"Grant(user={self.user!r}, session={self.session!r})"


class ConnectTokens:
    MAX_TOKENS = 10_000

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.clock = clock
        self._grants: dict[str, Grant] = {}

    def issue(self, user: str, session: str, connection: Any) -> str:
        now = self.clock()
        self._drop_expired(now)
        if len(self._grants) >= self.MAX_TOKENS:
            raise TokenRefused("too many outstanding connect tokens")
        token = secrets.token_urlsafe(32)
        self._grants[token] = Grant(user, session, connection, now + self.ttl)
        return token

    def take(self, token: str | None, user: str, session: str) -> Grant:
        """The grant for TOKEN if USER may use it for SESSION now; the token is spent either way."""
        grant = self._grants.pop(token, None) if isinstance(token, str) and len(token) <= 64 else None
        if grant is None:
            raise TokenRefused("unknown or already used token")
        if self.clock() >= grant.expires:
            raise TokenRefused("expired token")
        # compare_digest: not a secret comparison, but keeps timing flat all the same.
        if not (hmac.compare_digest(grant.user, user) and hmac.compare_digest(grant.session, session)):
            raise TokenRefused("token issued for another user or session")
        return grant

    def discard(self, token: str | None) -> None:
        """Spend TOKEN unused: an upgrade refused for another reason still burns it."""
        if isinstance(token, str):
            self._grants.pop(token, None)

    def revoke_session(self, session: str) -> None:
        for key in [k for k, g in self._grants.items() if g.session == session]:
            del self._grants[key]

    def _drop_expired(self, now: float) -> None:
        for key in [k for k, g in self._grants.items() if now >= g.expires]:
            del self._grants[key]
