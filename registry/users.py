"""Registry users: bcrypt hashes in an htpasswd file, roles beside it in roles.json.

htpasswd stays in the standard `user:$2b$...` format so other tools can read it;
the role of each user lives in a separate file because htpasswd has no room for
it. The token service re-reads both when they change, so adding or removing a
user takes effect without restarting anything.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Iterator

import bcrypt

from asci_core.errors import UsageError

ADMIN_USER = "asci-admin"
USER_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
MIN_PASSWORD = 12  # characters
# bcrypt reads at most 72 bytes (bcrypt 5 refuses more, older versions cut silently),
# so a longer password could never be checked the same way everywhere: refuse it.
MAX_PASSWORD_BYTES = 72


class Role(str, Enum):
    PULL = "pull"  # compute nodes: read images and the catalogue
    PUSH = "push"  # autobuild: pull and push, never delete
    ADMIN = "admin"  # ops and retention: everything, deletes included

    def actions(self) -> frozenset[str]:
        return _ACTIONS[self]


_ACTIONS = {
    Role.PULL: frozenset({"pull"}),
    Role.PUSH: frozenset({"pull", "push"}),
    Role.ADMIN: frozenset({"pull", "push", "delete", "*"}),
}


class UserError(UsageError):
    """A user-management request that cannot be done; the message says why."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role | None  # None: in htpasswd without a role, so the token service grants nothing


def write_private(path: Path, text: str) -> None:
    """Atomically replace PATH with TEXT, readable by the owner only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fits_bcrypt(password: str) -> bool:
    """True when bcrypt can check PASSWORD exactly: UTF-8, at most 72 bytes, no NUL."""
    try:
        data = password.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return len(data) <= MAX_PASSWORD_BYTES and b"\0" not in data


def password_problem(password: str) -> str | None:
    """Why PASSWORD cannot be stored (None: it can). Checked before anything is hashed or written."""
    try:
        size = len(password.encode("utf-8"))
    except UnicodeEncodeError:
        return "a password must be valid UTF-8 text"
    if len(password) < MIN_PASSWORD:
        return f"a password must have at least {MIN_PASSWORD} characters"
    if size > MAX_PASSWORD_BYTES:
        return (f"a password may have at most {MAX_PASSWORD_BYTES} bytes in UTF-8 (bcrypt reads no further); "
                f"this one has {size}")
    if "\0" in password or any(c in password for c in "\r\n"):
        return "a password may not contain NUL or line breaks"
    return None


def hash_password(password: str) -> str:
    problem = password_problem(password)
    if problem is not None:
        raise UserError(problem)
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def new_password() -> str:
    return secrets.token_urlsafe(24)


def read_htpasswd(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    users: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, hashed = line.strip().partition(":")
        if sep and name:
            users[name] = hashed
    return users


def read_roles(path: Path) -> dict[str, Role]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raw = {}
    roles = {name: Role(value) for name, value in raw.items() if value in Role._value2member_map_}
    # State dirs from before roles existed hold only the generated admin.
    roles.setdefault(ADMIN_USER, Role.ADMIN)
    return roles


def _stored_password(credentials: Path) -> str | None:
    try:
        password = json.loads(credentials.read_text()).get("password")
    except (FileNotFoundError, ValueError, AttributeError):
        return None
    return password if isinstance(password, str) and password else None


class UserStore:
    def __init__(self, directory: Path):
        self.directory = directory
        self.htpasswd = directory / "htpasswd"
        self.roles = directory / "roles.json"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".users.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def list(self) -> list[User]:
        roles = read_roles(self.roles)
        return [User(name, roles.get(name)) for name in sorted(read_htpasswd(self.htpasswd))]

    def add(self, name: str, role: Role, password: str | None = None) -> str:
        """Create NAME with ROLE; returns the password (generated unless given). Never logs it."""
        if not USER_RE.fullmatch(name):
            raise UserError(f"{name!r} is not a valid user name (lower-case letters, digits, . _ -; at most 64)")
        if password is not None and (problem := password_problem(password)) is not None:
            raise UserError(problem)
        password = new_password() if password is None else password
        hashed = hash_password(password)
        with self._locked():
            users = read_htpasswd(self.htpasswd)
            if name in users:
                raise UserError(f"user {name!r} exists already (remove it first to replace it)")
            roles = read_roles(self.roles)
            roles[name] = role
            # Role first: a user must never exist in htpasswd without one.
            self._write_roles(roles)
            users[name] = hashed
            self._write_htpasswd(users)
        return password

    def remove(self, name: str) -> None:
        with self._locked():
            users = read_htpasswd(self.htpasswd)
            if name not in users:
                raise UserError(f"no user {name!r}")
            remaining_admins = [u for u, r in read_roles(self.roles).items() if r is Role.ADMIN and u in users and u != name]
            if not remaining_admins:
                raise UserError(f"{name!r} is the last admin; add another admin first")
            del users[name]
            self._write_htpasswd(users)
            roles = read_roles(self.roles)
            roles.pop(name, None)
            self._write_roles(roles)

    def ensure(self, name: str, role: Role, password: str) -> None:
        """Make NAME exist with ROLE (used for the generated admin); keeps an existing hash."""
        with self._locked():
            users = read_htpasswd(self.htpasswd)
            roles = read_roles(self.roles)
            if roles.get(name) is not role or not self.roles.exists():
                roles[name] = role
                self._write_roles(roles)
            if name not in users:
                users[name] = hash_password(password)
                self._write_htpasswd(users)

    def ensure_admin(self, credentials: Path) -> None:
        """Make the generated admin exist, its password in CREDENTIALS (0600).

        An admin that is missing from htpasswd was removed on purpose (perhaps its password
        leaked), so it comes back with a new password, never the one in the old file.
        """
        with self._locked():
            users = read_htpasswd(self.htpasswd)
            roles = read_roles(self.roles)
            if roles.get(ADMIN_USER) is not Role.ADMIN or not self.roles.exists():
                roles[ADMIN_USER] = Role.ADMIN
                self._write_roles(roles)
            if ADMIN_USER in users and _stored_password(credentials) is not None:
                return
            password = new_password()
            # The file first: a crash between the two writes then leaves an admin that is
            # missing (and re-created next time), never one whose password nobody has.
            write_private(credentials, json.dumps({"username": ADMIN_USER, "password": password}) + "\n")
            users[ADMIN_USER] = hash_password(password)
            self._write_htpasswd(users)

    def _write_htpasswd(self, users: dict[str, str]) -> None:
        write_private(self.htpasswd, "".join(f"{u}:{h}\n" for u, h in users.items()))

    def _write_roles(self, roles: dict[str, Role]) -> None:
        write_private(self.roles, json.dumps({u: r.value for u, r in sorted(roles.items())}, indent=2) + "\n")
