"""Who a user is: name, uid, gid and groups, looked up by name.

`Directory` is the interface (the browser issue adds LDAP); `LocalUsersFile` is
the embedded default, a YAML or JSON file:

    users:
      - name: alice
        uid: 1001
        gid: 1001
        groups: [beamline-i03]
        password_hash: "$2b$12$..."   # bcrypt, for the login page; optional
    groups:                           # optional: numeric ids, added to the user's sessions
      beamline-i03: 7003

The file is re-read when it changes, so adding a user needs no restart. A file
with one bad entry is refused as a whole (naming the entry), never half-loaded.
"""
from __future__ import annotations

from asci_core.errors import AsciError, UsageError

import json
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
# Sessions never run as root or a system account: uid/gid 0..999 are refused.
MIN_ID, MAX_ID = 1000, 2 ** 31 - 2
BCRYPT = re.compile(r"\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}")


class UnknownUser(UsageError, LookupError):
    def __init__(self, name: str):
        super().__init__(f"unknown user {name!r}")
        self.name = name


class DirectoryError(AsciError):
    """The directory itself is unusable (unreadable or invalid users file)."""


@dataclass(frozen=True)
class Researcher:
    name: str
    uid: int
    gid: int
    groups: tuple[str, ...] = ()
    password_hash: str | None = None
    group_ids: tuple[int, ...] = ()  # the gids of those groups the directory knows a number for
    # (name, gid) of those groups: what a desktop image needs to create them (ASCI_GROUPS).
    numbered_groups: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if self.numbered_groups and not self.group_ids:
            object.__setattr__(self, "group_ids", tuple(sorted({gid for _, gid in self.numbered_groups})))

    def __repr__(self) -> str:  # the hash stays out of logs and tracebacks
        return f"Researcher(name={self.name!r}, uid={self.uid}, gid={self.gid}, groups={self.groups!r})"


class Directory(Protocol):
    def lookup(self, name: str) -> Researcher:
        """The user called NAME; UnknownUser when there is none."""


class LocalUsersFile:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, Researcher] = {}

    def lookup(self, name: str) -> Researcher:
        if not isinstance(name, str) or not USER_NAME.fullmatch(name):
            raise UnknownUser(str(name))
        user = self._current().get(name)
        if user is None:
            raise UnknownUser(name)
        return user

    def users(self) -> list[Researcher]:
        return sorted(self._current().values(), key=lambda u: u.name)

    def _current(self) -> dict[str, Researcher]:
        with self._lock:
            try:
                st = self.path.stat()
            except FileNotFoundError:
                self._stamp, self._users = None, {}
                return self._users
            except OSError as exc:
                raise DirectoryError(f"{self.path}: cannot be read ({exc.strerror or exc})") from None
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._users = load_users(self.path)
                self._stamp = stamp
            return self._users


def load_users(path: Path) -> dict[str, Researcher]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DirectoryError(f"{path}: cannot be read ({exc})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise DirectoryError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({exc})") from None
    return parse_users(data or {}, str(path))


def parse_users(data: Any, source: str) -> dict[str, Researcher]:
    if not isinstance(data, dict) or not isinstance(data.get("users", []), list):
        raise DirectoryError(f"{source}: expected a mapping with a list under 'users'")
    unknown_top = set(data) - {"users", "groups"}
    if unknown_top:
        raise DirectoryError(f"{source}: {sorted(unknown_top)[0]}: unknown section (known: users, groups)")
    gids = parse_group_ids(data.get("groups") or {}, source)
    users: dict[str, Researcher] = {}
    uids: dict[int, str] = {}
    for i, entry in enumerate(data.get("users") or []):
        key = f"{source}: users[{i}]"
        if not isinstance(entry, dict):
            raise DirectoryError(f"{key}: expected a mapping with name, uid, gid")
        unknown = set(entry) - {"name", "uid", "gid", "groups", "password_hash"}
        if unknown:
            raise DirectoryError(f"{key}.{sorted(unknown)[0]}: unknown field (known: name, uid, gid, groups, password_hash)")
        name = entry.get("name")
        if not isinstance(name, str) or not USER_NAME.fullmatch(name):
            raise DirectoryError(f"{key}.name: expected a user name such as alice, got {name!r}")
        for field in ("uid", "gid"):
            value = entry.get(field)
            if isinstance(value, bool) or not isinstance(value, int) or not MIN_ID <= value <= MAX_ID:
                raise DirectoryError(f"{key}.{field}: expected a number from {MIN_ID} to {MAX_ID} "
                                     f"(system accounts cannot run sessions), got {value!r}")
        groups = entry.get("groups", [])
        if not isinstance(groups, list) or not all(isinstance(g, str) and USER_NAME.fullmatch(g) for g in groups):
            raise DirectoryError(f"{key}.groups: expected a list of group names, got {groups!r}")
        password_hash = entry.get("password_hash")
        if password_hash is not None and (not isinstance(password_hash, str) or not BCRYPT.fullmatch(password_hash)):
            raise DirectoryError(f"{key}.password_hash: expected a bcrypt hash ($2b$...)")
        if name in users:
            raise DirectoryError(f"{key}.name: user {name!r} is listed twice")
        if entry["uid"] in uids:
            raise DirectoryError(f"{key}.uid: uid {entry['uid']} already belongs to {uids[entry['uid']]!r}")
        uids[entry["uid"]] = name
        users[name] = Researcher(name, entry["uid"], entry["gid"], tuple(groups), password_hash,
                                 numbered_groups=tuple(sorted({(g, gids[g]) for g in groups if g in gids})))
    return users


def parse_group_ids(data: Any, source: str) -> dict[str, int]:
    if not isinstance(data, dict):
        raise DirectoryError(f"{source}: groups: expected a mapping of group name to gid, e.g. {{beamline-i03: 7003}}")
    for name, gid in data.items():
        if not isinstance(name, str) or not USER_NAME.fullmatch(name):
            raise DirectoryError(f"{source}: groups: expected a group name, got {name!r}")
        if isinstance(gid, bool) or not isinstance(gid, int) or not MIN_ID <= gid <= MAX_ID:
            raise DirectoryError(f"{source}: groups.{name}: expected a gid from {MIN_ID} to {MAX_ID}, got {gid!r}")
    return dict(data)
