"""The dependency rule: asci_core's plumbing imports no component.

Plumbing: asci_core's configuration, `asci` command, JSON logging, errors,
component registry, `asci serve` and stack manager. Components (autobuild,
registry, asci_logging, alerts) and asci_core's upper floors (launcher, web,
services) may import the plumbing; the plumbing reaches them only through the
names listed in asci_core.components.COMPONENT_MODULES.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "asci_core"
# Every module directly in asci_core/ and everything in asci_core/stack/; the upper floors are packages of their own.
PLUMBING = sorted([*CORE.glob("*.py"), *(CORE / "stack").rglob("*.py")])
FORBIDDEN = ("autobuild", "registry", "asci_logging", "alerts",
             "asci_core.launcher", "asci_core.web", "asci_core.services", "asci_core.gpu")
COMPONENT_CODE = [p for d in ("autobuild", "registry", "logging/asci_logging", "alerts", "asci_core/launcher", "asci_core/web",
                                "asci_core/services", "asci_core/gpu") for p in (ROOT / d).rglob("*.py")]


def imported_modules(source: str) -> set[str]:
    """Every module an import statement names, at any depth (functions and TYPE_CHECKING blocks too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def violations(source: str) -> list[str]:
    return sorted(m for m in imported_modules(source)
                  if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))


def test_the_plumbing_list_covers_the_ground_floor():
    names = {str(p.relative_to(CORE)) for p in PLUMBING}
    assert {"cli.py", "config.py", "config_base.py", "jsonlog.py", "server.py", "components.py", "errors.py",
            "stack/manager.py", "stack/part.py"} <= names


@pytest.mark.parametrize("path", PLUMBING, ids=lambda p: str(p.relative_to(ROOT)))
def test_plumbing_imports_no_component(path: Path):
    assert violations(path.read_text()) == [], f"{path.relative_to(ROOT)} imports a component"


def test_the_check_catches_a_component_import():
    # The rule must be able to fail: what a slip in asci_core/config.py would look like.
    assert "autobuild.settings" in violations("from autobuild.settings import AutobuildSettings\n")
    assert violations("def f():\n    import registry.service\n") == ["registry.service"]
    assert violations("from asci_core import launcher\n") == ["asci_core.launcher"]
    assert violations("from asci_core.config import Config\nimport json\n") == []


def test_components_take_secret_from_config_base():
    # asci_core.config is composed from the components' settings: they import config_base for Secret.
    offenders = [str(p.relative_to(ROOT)) for p in COMPONENT_CODE
                 if any(isinstance(n, ast.ImportFrom) and n.module == "asci_core.config"
                        and any(a.name in ("Secret", "ConfigError", "setting") for a in n.names)
                        for n in ast.walk(ast.parse(p.read_text())))]
    assert offenders == []


def test_every_component_module_is_registered_and_light():
    from asci_core.components import COMPONENT_MODULES, components

    assert [c.name for c in components()] == ["autobuild", "registry", "logging", "launcher", "alerts", "web",
                                              "services", "gpu"]
    for module in COMPONENT_MODULES:
        path = ROOT / (module.replace("asci_logging", "logging/asci_logging").replace(".", "/") + ".py")
        top_level = {m for n in ast.parse(path.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))
                     for m in imported_modules(ast.unparse(n))}
        # Built into every `asci` call's configuration: only the settings and the registry itself at import time.
        heavy = [m for m in top_level if m.split(".")[0] in ("docker", "aiohttp", "git", "requests", "elasticsearch")]
        assert heavy == [], f"{module} imports {heavy} at load time"
