"""The `launcher_api:` section: who may call the sessions API of `asci serve`, and how often.

A section of its own (not inside `launcher:`) so the API's knobs stay apart from
what places and runs sessions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asci_core.config_base import Secret, setting

from .leader_lock import default_lock_dir
from .settings import NAME

# A token is a bearer credential: anything shorter is guessable in the time a throttle allows.
MIN_TOKEN_LENGTH = 32


@dataclass(frozen=True)
class ApiTokenSettings:
    user: str = setting(help="who the token belongs to: a user in the directory, or a service name, e.g. proxy")
    token: Secret = setting(help=f"the bearer token (at least {MIN_TOKEN_LENGTH} characters), "
                                 "best as {file: PATH} or {env: VARIABLE}")
    service: bool = setting(False, help="a service (e.g. the browser proxy) that may act for any user "
                                        "(X-Asci-User); otherwise the token acts only as its user")


@dataclass(frozen=True)
class LauncherApiSettings:
    admin_token_file: Path | None = setting(None, help="the admin token `asci` reads, made by `asci serve` on first "
                                                       "start (default: launcher workdir/api-token, mode 0600)")
    tokens: list[ApiTokenSettings] = setting(default_factory=list, help="bearer tokens of users and services")
    create_burst: int = setting(5, help="session creates one user may send at once", check=("range", 1, 1000))
    creates_per_minute: float = setting(10.0, help="creates per user per minute once the burst is spent",
                                        check="positive")
    auth_failures_burst: int = setting(10, help="failed authentications one client address may make at once",
                                       check=("range", 1, 10000))
    auth_failures_per_minute: float = setting(6.0, help="failed authentications per address per minute after that",
                                              check="positive")
    max_body_bytes: int = setting(16384, help="largest request body", check=("range", 256, 1048576))
    body_timeout: float = setting(10.0, help="seconds a client gets to send its request body", check="positive")
    workers: int = setting(8, help="threads for engine and database calls", check=("range", 1, 64))
    cull_interval: float = setting(60.0, help="seconds between two culls of idle and expired sessions",
                                   check="positive")
    container_events: bool = setting(True, help="follow the engine's events and log `container exited` for every "
                                                "ASCI container that stops (feeds the container alert rules)")
    container_events_lock_dir: Path = setting(
        default_factory=default_lock_dir,
        help="where the serves of this host agree that one of them follows each engine's events (a lock file per "
             "engine): the others stand by and take over when it stops; serves sharing an engine must share this "
             "folder (default /run/asci as root, else $XDG_RUNTIME_DIR/asci or /tmp/asci-UID)")

    def problems(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        seen: set[Secret] = set()
        for i, entry in enumerate(self.tokens):
            key = f"tokens[{i}]"
            if not NAME.fullmatch(entry.user):
                found.append((f"{key}.user", f"expected a user or service name, got {entry.user!r}"))
            if len(entry.token.reveal()) < MIN_TOKEN_LENGTH:
                found.append((f"{key}.token", f"shorter than {MIN_TOKEN_LENGTH} characters "
                                              f"(make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"))
            if entry.token in seen:
                found.append((f"{key}.token", "the same token is listed twice"))
            seen.add(entry.token)
        return found
