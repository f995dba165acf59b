"""The `gpu:` section of the configuration."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from asci_core.config_base import setting


@dataclass(frozen=True)
class ThreeDxSettings:
    enabled: bool = setting(False, help="run a development 3DX (Xvfb +extension GLX, Mesa software GL) as part "
                                        "of `asci stack up`; a GPU node runs the site's Xorg on its GPU instead")
    display: int = setting(55, help="X display number of the 3DX: its socket is /tmp/.X11-unix/X<display>",
                           check=("range", 1, 999))
    screen: str = setting("1280x1024x24", help="Xvfb screen geometry WIDTHxHEIGHTxDEPTH")
    binary: Path = setting(Path("/usr/bin/Xvfb"), help="the Xvfb program (Debian package xvfb)")
    start_timeout: float = setting(20.0, help="seconds to wait for the 3DX to accept a connection", check="positive")


@dataclass(frozen=True)
class GpuSettings:
    three_dx: ThreeDxSettings = field(default_factory=ThreeDxSettings)
