"""The `web:` section: login, cookies, the connect tokens and the VNC proxy's limits."""
from __future__ import annotations

from dataclasses import dataclass, field

from asci_core.config_base import Secret, setting


@dataclass(frozen=True)
class LdapSettings:
    url: str = setting("", help="LDAP server, e.g. ldaps://ldap.example.org; empty: the launcher's users file")
    user_dn_template: str = setting("", help="bind DN of a user, {user} replaced, e.g. uid={user},ou=people,dc=example,dc=org "
                                             "(empty: search under search_base)")
    search_base: str = setting("", help="where users (posixAccount) are looked up, e.g. ou=people,dc=example,dc=org")
    bind_dn: str = setting("", help="service account for lookups (empty: anonymous)")
    bind_password: Secret | None = setting(None, help="the service account's password")
    user_object_class: str = setting("posixAccount", help="object class of user entries")
    name_attribute: str = setting("uid", help="attribute holding the user name")
    group_base: str = setting("", help="where posixGroups are searched (memberUid); empty: memberOf only")
    timeout: float = setting(5.0, help="seconds for connecting and each operation", check="positive")


@dataclass(frozen=True)
class WebSettings:
    secure_cookies: bool = setting(False, help="mark cookies Secure (set when browsers reach ASCI over https)")
    origin: str = setting("", help="the origin browsers use, e.g. https://asci.example.org (empty: http://HOST of the request)")
    session_lifetime: float = setting(28800.0, help="seconds a login lasts", check="positive")
    session_idle: float = setting(3600.0, help="seconds without a request after which a login ends", check="positive")
    connect_token_ttl: float = setting(60.0, help="seconds a connect token is valid", check="positive")
    max_viewers_per_user: int = setting(4, help="open viewer connections per user", check="positive")
    viewer_idle_timeout: float = setting(3600.0, help="seconds without input before a viewer is closed", check="positive")
    max_message_bytes: int = setting(262144, help="largest WebSocket message from a browser", check="positive")
    login_failures_before_delay: int = setting(5, help="wrong passwords per account before back-off", check="positive")
    login_delay: float = setting(1.0, help="first back-off in seconds; doubles with each further failure", check="positive")
    login_max_delay: float = setting(300.0, help="longest back-off in seconds", check="positive")
    first_run_user: str = setting("researcher", help="user created on first run when there is no users file", check="word")
    ldap: LdapSettings = field(default_factory=LdapSettings)
