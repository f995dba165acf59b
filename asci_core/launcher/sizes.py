"""Byte sizes written the way Docker users write them: 4g, 512m, 1.5G, 1073741824."""
from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)(?:i?b)?", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes in TEXT; ValueError with a readable reason when it is not a size."""
    if isinstance(text, bool):
        raise ValueError(f"expected a size such as 4g or 512m, got {text!r}")
    if isinstance(text, int):
        if text <= 0:
            raise ValueError(f"expected a size above 0, got {text}")
        return text
    match = _SIZE.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"expected a size such as 4g or 512m, got {text!r}")
    number, unit = match.groups()
    value = int(float(number) * _UNITS[unit.lower()])
    if value <= 0:
        raise ValueError(f"expected a size above 0, got {text!r}")
    return value


def format_size(value: float) -> str:
    """Short human form for messages: 512 MiB, 3.5 GiB."""
    for unit, factor in (("TiB", 1024 ** 4), ("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if abs(value) >= factor:
            return f"{value / factor:.4g} {unit}"
    return f"{value:.0f} B"
