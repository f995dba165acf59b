"""LDAP users for login and for the launcher: posixAccount entries, posixGroup or memberOf groups.

A user is found either by a DN template (`uid={user},ou=people,...`) or by a search
under `search_base` with the service account. Their password is checked by binding
as them; an empty password is refused before any bind (LDAP treats it as an
unauthenticated bind, which succeeds). Names are checked against the launcher's
user-name pattern and escaped in every filter and DN anyway.
"""
from __future__ import annotations

import math
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

from asci_core.jsonlog import get_logger
from asci_core.launcher.directory import MAX_ID, MIN_ID, USER_NAME, DirectoryError, Researcher, UnknownUser

from .settings import LdapSettings

log = get_logger("web")
ATTRIBUTES = ["uidNumber", "gidNumber", "memberOf"]


class LdapDirectory:
    def __init__(self, settings: LdapSettings):
        if not settings.url:
            raise DirectoryError("web.ldap.url is empty")
        if not settings.user_dn_template and not settings.search_base:
            raise DirectoryError("web.ldap needs user_dn_template or search_base")
        self.settings = settings
        self.server = ldap3.Server(settings.url, connect_timeout=settings.timeout, get_info=ldap3.NONE)

    # --- the launcher's Directory interface -------------------------------

    def lookup(self, name: str) -> Researcher:
        if not isinstance(name, str) or not USER_NAME.fullmatch(name):
            raise UnknownUser(str(name))
        with self._connection(self.settings.bind_dn or None, self._service_password()) as conn:
            found = self._find(conn, name)
            if found is None:
                raise UnknownUser(name)
            return self._researcher(conn, name, *found)

    # --- login ------------------------------------------------------------

    def authenticate(self, name: str, password: str) -> Researcher | None:
        if not password or not isinstance(name, str) or not USER_NAME.fullmatch(name):
            return None
        if self.settings.user_dn_template:
            dn = self.settings.user_dn_template.replace("{user}", escape_rdn(name))
        else:
            with self._connection(self.settings.bind_dn or None, self._service_password()) as conn:
                found = self._find(conn, name)
            if found is None:
                return None
            dn = found[0]
        try:
            conn = ldap3.Connection(self.server, user=dn, password=password, receive_timeout=max(1, math.ceil(self.settings.timeout)),
                                    raise_exceptions=False, read_only=True)
            if not conn.bind():
                return None  # 49: wrong password or no such entry — the same answer
            try:
                found = self._read(conn, dn)
                return None if found is None else self._researcher(conn, name, *found)
            except UnknownUser:
                return None
            finally:
                conn.unbind()
        except LDAPException as exc:
            raise DirectoryError(f"LDAP server {self.settings.url} unusable: {type(exc).__name__}") from None

    # --- helpers ----------------------------------------------------------

    def _service_password(self) -> str | None:
        return self.settings.bind_password.reveal() if self.settings.bind_password is not None else None

    def _connection(self, user: str | None, password: str | None) -> Any:
        try:
            conn = ldap3.Connection(self.server, user=user, password=password, receive_timeout=max(1, math.ceil(self.settings.timeout)),
                                    raise_exceptions=False, read_only=True)
            if not conn.bind():
                raise DirectoryError(f"LDAP server {self.settings.url} refused the service bind "
                                     f"({conn.result.get('description')})")
        except LDAPException as exc:
            raise DirectoryError(f"LDAP server {self.settings.url} unusable: {type(exc).__name__}") from None
        return conn

    def _find(self, conn: Any, name: str) -> tuple[str, dict] | None:
        s = self.settings
        if s.user_dn_template:
            return self._read(conn, s.user_dn_template.replace("{user}", escape_rdn(name)))
        query = (f"(&(objectClass={escape_filter_chars(s.user_object_class)})"
                 f"({escape_filter_chars(s.name_attribute)}={escape_filter_chars(name)}))")
        conn.search(s.search_base, query, ldap3.SUBTREE, attributes=ATTRIBUTES, size_limit=2)
        if len(conn.entries) != 1:
            return None
        entry = conn.entries[0]
        return entry.entry_dn, entry.entry_attributes_as_dict

    def _read(self, conn: Any, dn: str) -> tuple[str, dict] | None:
        query = f"(objectClass={escape_filter_chars(self.settings.user_object_class)})"
        if not conn.search(dn, query, ldap3.BASE, attributes=ATTRIBUTES) or len(conn.entries) != 1:
            return None
        return dn, conn.entries[0].entry_attributes_as_dict

    def _researcher(self, conn: Any, name: str, dn: str, attrs: dict) -> Researcher | None:
        try:
            uid, gid = int(attrs["uidNumber"][0]), int(attrs["gidNumber"][0])
        except (KeyError, IndexError, ValueError, TypeError):
            log.warning("LDAP entry without uidNumber/gidNumber", user=name)
            raise UnknownUser(name) from None
        if not (MIN_ID <= uid <= MAX_ID and MIN_ID <= gid <= MAX_ID):
            log.warning("LDAP entry with a system uid or gid refused", user=name, uid=uid, gid=gid)
            raise UnknownUser(name)
        groups: set[str] = set()
        for group_dn in attrs.get("memberOf", []):
            try:
                groups.add(str(parse_dn(group_dn)[0][1]))
            except (LDAPException, IndexError):
                continue
        numbered: set[tuple[str, int]] = set()
        if self.settings.group_base:
            conn.search(self.settings.group_base,
                        f"(&(objectClass=posixGroup)(memberUid={escape_filter_chars(name)}))",
                        ldap3.SUBTREE, attributes=["cn", "gidNumber"], size_limit=1000)
            for entry in conn.entries:
                group = str(entry.cn.value or "")
                groups.add(group)
                number = posix_gid(entry)
                if number is not None and USER_NAME.fullmatch(group):
                    numbered.add((group, number))
        return Researcher(name, uid, gid, tuple(sorted(g for g in groups if g and USER_NAME.fullmatch(g))),
                          numbered_groups=tuple(sorted(numbered)))


def posix_gid(entry: Any) -> int | None:
    """A posixGroup's gidNumber when sessions may carry it (not a system group's); else None."""
    try:
        number = int(entry.gidNumber.value)
    except (AttributeError, TypeError, ValueError, LDAPException):
        return None
    return number if MIN_ID <= number <= MAX_ID else None
