"""The launcher's entry in asci_core.components: the `launcher` settings section.

The sessions API, its CLI and the reconcile-at-start hook join here as they land.
"""
from __future__ import annotations

from asci_core.components import Component
from asci_core.launcher.settings import LauncherSettings

COMPONENT = Component(name="launcher", settings={"launcher": LauncherSettings})
