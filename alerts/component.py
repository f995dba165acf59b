"""alerts' entry in asci_core.components: the `alerts` settings and `asci alerts run|lint|test`."""
from __future__ import annotations

from typing import Any

from alerts.settings import AlertsSettings
from asci_core.components import Component


def _commands(subparsers: Any) -> None:
    from alerts.cli import register

    register(subparsers)


COMPONENT = Component(name="alerts", settings={"alerts": AlertsSettings}, commands=_commands)
