"""The `autobuild:` section of the configuration."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from asci_core.config_base import Secret, setting


@dataclass(frozen=True)
class RepositorySettings:
    name: str = setting(help="Bitbucket project/slug, e.g. BL/desktop-base", check="repo")
    webhook_secret: Secret = setting(help="HMAC secret of the repository's webhook")
    dockerfile: str = setting("Dockerfile", help="Dockerfile path inside the repository", check="relpath")
    context: str = setting(".", help="build context inside the repository", check="relpath")
    tag_pattern: str = setting(r"^v?\d+\.\d+\.\d+$", help="tags that get built", check="regex")
    move_latest: bool = setting(False, help="also point `latest` at the highest version")


@dataclass(frozen=True)
class AutobuildSettings:
    workdir: Path | None = setting(None, help="clone and build area (default: STATE_DIR/autobuild)")
    max_body_bytes: int = setting(1024 * 1024, help="largest webhook body accepted", check="positive")
    concurrency: int = setting(default_factory=lambda: os.cpu_count() or 1, help="builds at once", check="positive")
    repositories: list[RepositorySettings] = setting(default_factory=list, help="repositories that build images")
