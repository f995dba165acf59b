"""The launcher's entry in asci_core.components: the `launcher` and `launcher_api` settings,
`asci sessions | nodes | environments`, and the sessions API under `asci serve`."""
from __future__ import annotations

from typing import Any

from asci_core.components import Component
from asci_core.launcher.api_settings import LauncherApiSettings
from asci_core.launcher.settings import LauncherSettings


def _commands(subparsers: Any) -> None:
    from asci_core.launcher.cli import register

    register(subparsers)


def _routes(app: Any, config: Any) -> None:
    from asci_core.launcher import http

    http.setup(app, config)


COMPONENT = Component(name="launcher", settings={"launcher": LauncherSettings, "launcher_api": LauncherApiSettings},
                      commands=_commands, routes=_routes)
