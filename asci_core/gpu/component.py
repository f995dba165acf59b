"""The GPU entry in asci_core.components: the `gpu` settings and the development 3DX stack part."""
from __future__ import annotations

from typing import Any

from asci_core.components import Component
from asci_core.gpu.settings import GpuSettings


def _stack_parts(config: Any) -> list:
    if not config.gpu.three_dx.enabled:
        return []
    from asci_core.gpu.three_dx import ThreeDxPart

    return [ThreeDxPart(config)]


COMPONENT = Component(name="gpu", settings={"gpu": GpuSettings}, stack_parts=_stack_parts)
