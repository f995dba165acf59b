"""asci_logging's entry in asci_core.components: the `logging` settings and `asci logging`."""
from __future__ import annotations

from typing import Any

from asci_core.components import Component
from asci_logging.settings import LoggingSettings


def _commands(subparsers: Any) -> None:
    from asci_logging.cli import register

    register(subparsers)


COMPONENT = Component(name="logging", settings={"logging": LoggingSettings}, commands=_commands)
