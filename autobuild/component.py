"""autobuild's entry in asci_core.components: the `autobuild` settings, `asci builds`, the webhook routes."""
from __future__ import annotations

from typing import Any

from asci_core.components import Component
from autobuild.settings import AutobuildSettings


def _commands(subparsers: Any) -> None:
    from autobuild.cli import register

    register(subparsers)


def _routes(app: Any, config: Any) -> None:
    from autobuild import http
    from autobuild.service import Autobuild

    http.setup(app, Autobuild(config))


COMPONENT = Component(name="autobuild", settings={"autobuild": AutobuildSettings},
                      commands=_commands, routes=_routes)
