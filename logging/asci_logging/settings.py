"""The `logging:` section of the configuration."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from asci_core.config_base import setting


@dataclass(frozen=True)
class LoggingSettings:
    level: Literal["debug", "info", "warning", "error"] = setting("info", help="lowest level ASCI's own logs write")
