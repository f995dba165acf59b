"""ElastAlert's five state indices, created idempotently with ElastAlert's own mappings.

`elastalert-create-index` prints to stdout, sleeps, and skips everything once the main index
exists (so a half-created set stays half-created). This creates each missing index on its own,
in one request with its mapping, and treats "already exists" from a concurrent start as success.
"""
from __future__ import annotations

from asci_core.errors import AsciError

import json
from pathlib import Path

import elastalert
import requests

from asci_logging.search_client import SearchAccess

# OpenSearch 2.x is handled by ElastAlert's ES-8 code path, so its ES-8 mappings apply.
MAPPINGS = Path(elastalert.__file__).with_name("es_mappings") / "8"
SUFFIXES = {"": "elastalert", "_status": "elastalert_status", "_silence": "silence",
            "_error": "elastalert_error", "_past": "past_elastalert"}


class WritebackError(AsciError):
    pass


def ensure_writeback(engine: SearchAccess, index: str, timeout: float = 30) -> list[str]:
    """Create whichever of INDEX, INDEX_status, ... is missing; return the names created."""
    session = engine.session()
    created: list[str] = []
    try:
        for suffix, mapping_name in SUFFIXES.items():
            name = index + suffix
            if session.head(f"{engine.url}/{name}", timeout=timeout).status_code == 200:
                continue
            mapping = json.loads((MAPPINGS / f"{mapping_name}.json").read_text())
            resp = session.put(f"{engine.url}/{name}", timeout=timeout,
                               json={"mappings": mapping})
            if resp.status_code == 400 and "resource_already_exists_exception" in resp.text:
                continue
            if not resp.ok:
                raise WritebackError(f"cannot create ElastAlert index {name}: HTTP {resp.status_code} {resp.text[:300]}")
            created.append(name)
    except requests.RequestException as exc:
        raise WritebackError(f"search engine at {engine.url} not reachable ({type(exc).__name__})") from None
    return created


def remove_writeback(engine: SearchAccess, index: str) -> None:
    session = engine.session()
    for suffix in SUFFIXES:
        session.delete(f"{engine.url}/{index}{suffix}", timeout=30)
