"""The one way a component plugs into the plumbing: a `Component` entry, listed in COMPONENT_MODULES.

The plumbing (configuration, the `asci` command, JSON logging, `asci serve`,
the stack manager) never imports a component. It imports the modules named in
COMPONENT_MODULES by name, on first use, and each one exposes `COMPONENT`: the
settings sections it owns, its `asci` sub-commands, its stack parts and its
HTTP routes. A new component (the launcher, the web page) adds its module name
here and nothing else in the plumbing changes.

A component module must stay light: it imports its settings classes and
defers everything else (CLI, services, the docker SDK) into the hooks, since
the configuration is built from it on every `asci` call.

A new component, e.g. the launcher, is `asci_core/launcher/component.py`:

    COMPONENT = Component(
        name="launcher",
        settings={"launcher": LauncherSettings},       # config.launcher, `asci config help`, validation
        commands=_commands,                            # def _commands(subparsers): register `asci sessions ...`
        stack_parts=_stack_parts,                      # def _stack_parts(config) -> [Part, ...] (Part.order places them)
        routes=_routes,                                # def _routes(app, config): app.router.add_get(...)
    )

plus "asci_core.launcher.component" in COMPONENT_MODULES.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

if TYPE_CHECKING:  # annotations only: the plumbing's modules import this one
    from aiohttp import web

    from asci_core.stack.part import Part

# Order matters: settings sections, `asci --help` and the stack follow it.
COMPONENT_MODULES: tuple[str, ...] = (
    "autobuild.component",
    "registry.component",
    "asci_logging.component",
    "asci_core.launcher.component",
    "alerts.component",
    "asci_core.web.component",
    "asci_core.services.component",
    "asci_core.gpu.component",
)


@dataclass(frozen=True)
class Component:
    name: str
    # Top-level configuration sections this component owns: section name -> frozen settings dataclass.
    settings: Mapping[str, type] = field(default_factory=dict)
    # Adds sub-commands: receives argparse's subparsers; handlers get the loaded config in `args.config_obj`.
    commands: Callable[[Any], None] | None = None
    # The stack parts it runs (`asci stack up`); ordered with the core parts by `Part.order`.
    stack_parts: Callable[[Any], list["Part"]] | None = None
    # Adds its routes to the `asci serve` application; receives (app, config).
    routes: Callable[["web.Application", Any], None] | None = None


@functools.cache
def components() -> tuple[Component, ...]:
    found = []
    for module in COMPONENT_MODULES:
        entry = getattr(importlib.import_module(module), "COMPONENT", None)
        if not isinstance(entry, Component):
            raise TypeError(f"{module} has no COMPONENT entry (asci_core.components.Component)")
        found.append(entry)
    return tuple(found)


def settings_sections() -> list[tuple[str, type]]:
    return [(name, cls) for c in components() for name, cls in c.settings.items()]
