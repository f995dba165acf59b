"""Logged-in browsers: random 256-bit session ids kept in memory, each with its own CSRF token.

The id travels only in an HttpOnly, SameSite=Strict cookie; the CSRF token is put
in the page (a meta tag) and must come back in a header on every POST and DELETE:
another site can make the browser send the cookie, never read the token.
A restart logs everyone out — accepted: nothing about a login is written to disk.
"""
from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

from asci_core.launcher.directory import Researcher

COOKIE = "asci_session"
CSRF_HEADER = "X-CSRF-Token"


@dataclass
class Login:
    user: Researcher
    csrf: str
    created: float
    seen: float
    address: str = field(default="")

    def csrf_matches(self, presented: str | None) -> bool:
        return isinstance(presented, str) and hmac.compare_digest(presented.encode(), self.csrf.encode())


class Logins:
    MAX_LOGINS = 50_000

    def __init__(self, lifetime: float, idle: float, clock: Callable[[], float] = time.monotonic):
        self.lifetime = lifetime
        self.idle = idle
        self.clock = clock
        self._logins: dict[str, Login] = {}

    def open(self, user: Researcher, address: str) -> tuple[str, Login]:
        now = self.clock()
        if len(self._logins) >= self.MAX_LOGINS:
            self._expire(now)
        session_id = secrets.token_urlsafe(32)
        login = Login(user, secrets.token_urlsafe(32), now, now, address)
        self._logins[session_id] = login
        return session_id, login

    def get(self, session_id: str | None) -> Login | None:
        if not session_id or len(session_id) > 64:
            return None
        login = self._logins.get(session_id)
        if login is None:
            return None
        now = self.clock()
        if now - login.created > self.lifetime or now - login.seen > self.idle:
            self._logins.pop(session_id, None)
            return None
        login.seen = now
        return login

    def close(self, session_id: str | None) -> None:
        if session_id:
            self._logins.pop(session_id, None)

    def _expire(self, now: float) -> None:
        for key in [k for k, v in self._logins.items()
                    if now - v.created > self.lifetime or now - v.seen > self.idle]:
            del self._logins[key]
