"""How a build can end badly: worth retrying, or final."""
from __future__ import annotations

from asci_core.errors import AsciError


class StageError(AsciError):
    def __init__(self, stage: str, message: str):
        self.stage = stage
        super().__init__(message)


class TransientError(StageError):
    """The world was briefly wrong (registry or engine away, network): retry with backoff."""


class BuildError(StageError):
    """The input is wrong (a Dockerfile step failed, the tag moved): retrying cannot help."""
