"""A development 3DX for the tests: the stack part itself, on a free display, with its own state folder."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from asci_core.gpu.settings import GpuSettings, ThreeDxSettings
from asci_core.gpu.three_dx import ThreeDxPart
from asci_core.stack.process import terminate
from tests.integration.images_support import wait_for


def free_display(first: int = 55) -> int:
    for number in range(first, first + 40):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise AssertionError(f"no free X display from :{first}")


class DevThreeDx:
    """Start the 3DX part as `asci stack up` would (start, then wait for its probe), and stop it."""

    def __init__(self, config, state_dir: Path, display: int):
        settings = GpuSettings(three_dx=ThreeDxSettings(enabled=True, display=display))
        config = dataclasses.replace(config, gpu=settings,
                                     stack=dataclasses.replace(config.stack, state_dir=state_dir))
        self.part = ThreeDxPart(config)
        self.display = display
        self.started = None

    def __enter__(self) -> "DevThreeDx":
        self.started = self.part.start()
        wait_for("the 3DX to accept its cookie", lambda: self.part.probe().up, timeout=self.part.start_timeout)
        return self

    def __exit__(self, *exc) -> None:
        if self.started is not None:
            terminate(self.started.identity, timeout=10)
            for path in self.started.files:
                Path(path).unlink(missing_ok=True)
