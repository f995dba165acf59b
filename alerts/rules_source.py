"""Where rule files come from: the shipped alerts/rules, then a site's rules_dir (same name replaces)."""
from __future__ import annotations

from pathlib import Path

SHIPPED_RULES = Path(__file__).with_name("rules")


def rule_files(rules_dir: Path | None = None) -> dict[str, Path]:
    """Rule name (file name without .yaml) -> file, sorted by name."""
    found: dict[str, Path] = {}
    for folder in (SHIPPED_RULES, rules_dir):
        if folder is not None and folder.is_dir():
            for path in sorted(folder.glob("*.yaml")):
                found[path.stem] = path
    return dict(sorted(found.items()))


def rule_names(rules_dir: Path | None = None) -> set[str]:
    return set(rule_files(rules_dir))
