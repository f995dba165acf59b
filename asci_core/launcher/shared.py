"""One Launcher per `asci serve`: the sessions API and the web page share it.

Two Launchers in one process would share the SQLite store but not the admission lock, so
concurrent creates from the page and the API could over-commit a node. The first component
that needs the launcher makes it; whoever knows the directory (the web page, when LDAP is
configured) says so before that; the application's cleanup closes it once.
"""
from __future__ import annotations

import threading
from typing import Any

from aiohttp import web

from asci_core.launcher.directory import Directory
from asci_core.launcher.sessions import Launcher


class SharedLauncher:
    def __init__(self, config: Any):
        self.config = config
        self._directory: Directory | None = None
        self._launcher: Launcher | None = None
        self._lock = threading.Lock()

    def use_directory(self, directory: Directory) -> None:
        """Sessions take uid, gid and groups from DIRECTORY (e.g. LDAP) instead of the users file."""
        with self._lock:
            if self._launcher is not None:
                raise RuntimeError("the launcher is already running with another directory")
            self._directory = directory

    def get(self) -> Launcher:
        with self._lock:
            if self._launcher is None:
                launcher = Launcher.from_config(self.config)
                if self._directory is not None:
                    launcher.directory = self._directory
                self._launcher = launcher
            return self._launcher

    def close(self) -> None:
        with self._lock:
            if self._launcher is not None:
                self._launcher.close()
                self._launcher = None


SHARED_KEY = web.AppKey("asci_launcher", SharedLauncher)


def shared_launcher(app: web.Application, config: Any) -> SharedLauncher:
    """The application's one launcher holder, made on first use and closed with the application."""
    if SHARED_KEY not in app:
        holder = SharedLauncher(config)
        app[SHARED_KEY] = holder

        async def close(_: web.Application) -> None:
            holder.close()

        app.on_cleanup.append(close)
    return app[SHARED_KEY]
