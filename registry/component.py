"""registry's entry in asci_core.components: the `registry` settings, `asci registry`, the registry stack part."""
from __future__ import annotations

from typing import Any

from asci_core.components import Component
from registry.settings import RegistryComponentSettings


def _commands(subparsers: Any) -> None:
    from registry.cli import register

    register(subparsers)


def _stack_parts(config: Any) -> list:
    from registry.service import RegistryPart

    return [RegistryPart(config)]


COMPONENT = Component(name="registry", settings={"registry": RegistryComponentSettings},
                      commands=_commands, stack_parts=_stack_parts)
