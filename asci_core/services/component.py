"""The services' entry in asci_core.components: the `services` settings, `asci services`, and under
`asci serve` the reconcile at start, autobuild's build events and the periodic registry check."""
from __future__ import annotations

from typing import Any

from asci_core.components import Component

from .settings import ServicesSettings


def _commands(subparsers: Any) -> None:
    from .cli import register

    register(subparsers)


def _routes(app: Any, config: Any) -> None:
    from .runner import setup

    setup(app, config)


COMPONENT = Component(name="services", settings={"services": ServicesSettings}, commands=_commands, routes=_routes)
