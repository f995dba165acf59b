"""Everything the web app holds in memory, built once per `asci serve`."""
from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from .accounts import Accounts
from .logins import Logins
from .settings import WebSettings
from .throttle import LoginBackoff
from .tokens import ConnectTokens

T = TypeVar("T")


@dataclass
class Activity:
    bytes_in: int = 0
    bytes_out: int = 0
    last_input: float = 0.0


@dataclass
class WebState:
    settings: WebSettings
    launcher: Any  # asci_core.launcher.sessions.Launcher
    accounts: Accounts
    logins: Logins
    tokens: ConnectTokens
    throttle: LoginBackoff
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(8, thread_name_prefix="web"))
    viewers: dict[str, int] = field(default_factory=dict)
    activity: dict[str, Activity] = field(default_factory=dict)

    @classmethod
    def build(cls, settings: WebSettings, launcher: Any, accounts: Accounts) -> "WebState":
        return cls(settings, launcher, accounts, Logins(settings.session_lifetime, settings.session_idle),
                   ConnectTokens(settings.connect_token_ttl),
                   LoginBackoff(settings.login_failures_before_delay, settings.login_delay, settings.login_max_delay))

    async def blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking call (launcher, bcrypt, LDAP) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))
