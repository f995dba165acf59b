"""One error root: every expected failure is an AsciError with an exit code, and class names are unambiguous."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

from asci_core.errors import EXIT_CODES, AsciError

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"asci_core": ROOT / "asci_core", "autobuild": ROOT / "autobuild", "registry": ROOT / "registry",
            "asci_logging": ROOT / "logging/asci_logging", "alerts": ROOT / "alerts"}
NOT_YET: set[str] = set()


def product_classes() -> list[tuple[str, str, ast.ClassDef]]:
    found = []
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            module = ".".join([package, *path.relative_to(folder).with_suffix("").parts]).removesuffix(".__init__")
            found += [(module, node.name, node) for node in ast.parse(path.read_text()).body
                      if isinstance(node, ast.ClassDef)]
    return found


def test_every_exception_class_derives_from_asci_error():
    strays = []
    for module, name, _ in product_classes():
        cls = getattr(importlib.import_module(module), name)
        if isinstance(cls, type) and issubclass(cls, BaseException) and not issubclass(cls, AsciError):
            strays.append(f"{module}.{name}")
    assert sorted(set(strays) - NOT_YET) == []


def test_class_names_are_unique_across_the_product():
    seen: dict[str, str] = {}
    twice = []
    for module, name, _ in product_classes():
        if name in seen:
            twice.append(f"{name}: {seen[name]} and {module}")
        seen[name] = module
    assert twice == []


def test_exit_codes_are_documented():
    readme = (ROOT / "README.md").read_text()
    for code in EXIT_CODES:
        assert f"| {code} |" in readme, f"exit code {code} is not in the README's table"


def test_one_line_joins_a_multi_line_message():
    assert AsciError("failed\n--- last lines:\nboom\n").one_line() == "failed; --- last lines:; boom"
    assert AsciError().one_line() == "AsciError"


def test_codes_of_the_main_kinds():
    from asci_core.config_base import ConfigError
    from registry.errors import InvalidReference, RegistryUnavailable
    from registry.users import UserError

    assert ConfigError("f.yaml", "server.port", "bad").exit_code == 2
    assert ConfigError("f.yaml", "server.port", "bad").one_line() == "configuration error: f.yaml: server.port: bad"
    assert InvalidReference("bad name").exit_code == 2 and UserError("no user").exit_code == 2
    assert RegistryUnavailable("down", code="UNAVAILABLE").one_line() == "down [UNAVAILABLE]"
    assert RegistryUnavailable("down").exit_code == 1
