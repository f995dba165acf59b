"""The versioned search-engine assets in logging/elasticsearch, rendered for one installation.

The files use the canonical prefix `asci-logs` for every name they contain
(pipeline ids, `pipeline` processor targets, index patterns, index prefixes).
Rendering replaces it with `logging.prefix`, so a site (or a test) can keep
several independent sets side by side.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CANONICAL_PREFIX = "asci-logs"
LOGGING_DIR = Path(__file__).resolve().parent.parent
ASSETS_DIR = LOGGING_DIR / "elasticsearch"
# Helpers first: a pipeline processor's target should exist before the pipeline that calls it.
HELPERS = ("level", "text", "asci-json")


@dataclass(frozen=True)
class Assets:
    prefix: str
    pipelines: dict[str, dict[str, Any]]  # id -> body, helpers first
    template_name: str
    template: dict[str, Any]
    ilm_policy: dict[str, Any]
    ism_policy: dict[str, Any]

    @property
    def policy_name(self) -> str:
        return self.prefix


def _render(path: Path, prefix: str) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8").replace(CANONICAL_PREFIX, prefix))


def source_names(root: Path = ASSETS_DIR) -> list[str]:
    """The sources that have a pipeline file: autobuild, registry, ..., in install order."""
    names = [p.stem[len(CANONICAL_PREFIX) + 1:] for p in sorted((root / "pipelines").glob(f"{CANONICAL_PREFIX}-*.json"))]
    return [n for n in HELPERS if n in names] + [n for n in names if n not in HELPERS]


def load_assets(prefix: str = CANONICAL_PREFIX, retention_days: int = 30, root: Path = ASSETS_DIR) -> Assets:
    pipelines = {f"{prefix}-{name}": _render(root / "pipelines" / f"{CANONICAL_PREFIX}-{name}.json", prefix)
                 for name in source_names(root)}
    template = _render(root / "templates" / f"{CANONICAL_PREFIX}.json", prefix)
    ilm = _with_retention_ilm(_render(root / "retention" / "ilm-policy.json", prefix), retention_days)
    ism = _with_retention_ism(_render(root / "retention" / "ism-policy.json", prefix), retention_days)
    return Assets(prefix, pipelines, prefix, template, ilm, ism)


def _with_retention_ilm(body: dict[str, Any], days: int) -> dict[str, Any]:
    phases = body["policy"]["phases"]
    phases["delete"]["min_age"] = f"{days}d"
    if days <= _age_days(phases["warm"]["min_age"]):
        del phases["warm"]  # ILM wants phases in age order; nothing to merge that soon
    return body


def _with_retention_ism(body: dict[str, Any], days: int) -> dict[str, Any]:
    states = body["policy"]["states"]
    for state in states:
        for t in state["transitions"]:
            if t["state_name"] == "delete":
                t["conditions"]["min_index_age"] = f"{days}d"
    return body


def _age_days(text: str) -> float:
    return float(text[:-1]) if text.endswith("d") else 0.0


def digest(body: dict[str, Any]) -> str:
    """Stable fingerprint of an asset body: what `install` compares to know whether to write."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def with_digest(template: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(template)
    body.setdefault("_meta", {})["asci_digest"] = digest(template)
    return body


def pipeline_references(body: dict[str, Any]) -> set[str]:
    """Names of the pipelines a pipeline body calls through `pipeline` processors, however nested."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "pipeline" and isinstance(value, dict) and isinstance(value.get("name"), str):
                    found.add(value["name"])
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(body)
    return found
