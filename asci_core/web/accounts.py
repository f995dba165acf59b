"""Checking a user name and password: the launcher's local users file (bcrypt) or LDAP.

Both return the Researcher on success and None for any wrong combination — an
unknown name, a wrong password and a user without a password are the same answer.
They block (bcrypt is slow on purpose, LDAP is a network call): the web app runs
them off the event loop.
"""
from __future__ import annotations

import functools
import secrets
from typing import Protocol

import bcrypt

from asci_core.launcher.directory import USER_NAME, LocalUsersFile, Researcher, UnknownUser

MAX_PASSWORD_BYTES = 1024


class Accounts(Protocol):
    def authenticate(self, name: str, password: str) -> Researcher | None: ...

    def lookup(self, name: str) -> Researcher: ...


@functools.cache
def _decoy_hash() -> bytes:
    # Checked for unknown names so they take as long as known ones.
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(12))


class LocalAccounts:
    def __init__(self, users: LocalUsersFile):
        self.users = users

    def lookup(self, name: str) -> Researcher:
        return self.users.lookup(name)

    def authenticate(self, name: str, password: str) -> Researcher | None:
        if not password or not USER_NAME.fullmatch(name or ""):
            return None
        secret = password.encode("utf-8")[:MAX_PASSWORD_BYTES]
        try:
            user = self.users.lookup(name)
        except UnknownUser:
            user = None
        stored = user.password_hash.encode() if user is not None and user.password_hash else _decoy_hash()
        matches = bcrypt.checkpw(secret, stored)
        return user if matches and user is not None and user.password_hash else None
