"""`asci logging install`: put the pipelines, the index template and a retention policy into the engine.

Idempotent: each asset is read back first and written only when it differs, and
the report says which were created, updated or left unchanged. Pipelines are
stored verbatim by the engine, so they are compared as they are; the template
is normalised on storage, so it carries a digest of our version in `_meta`.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable

import requests

from asci_logging.assets import Assets, digest, with_digest
from asci_logging.search_client import SearchEngineError


@dataclass(frozen=True)
class Change:
    kind: str  # pipeline, index template, retention
    name: str
    action: str  # created, updated, unchanged, would create, would update, not available
    detail: str = ""


# A busy node pushes back (429: a circuit breaker; 503: not ready) for moments at a time: worth a few tries.
_PUSHBACK = (429, 503)
_PUSHBACK_WAITS = (0.5, 1.0, 2.0, 4.0)


class Installer:
    def __init__(self, url: str, session: requests.Session, assets: Assets,
                 sleep: Callable[[float], None] = time.sleep):
        self.url = url.rstrip("/")
        self.session = session
        self.assets = assets
        self._sleep = sleep

    def run(self, check_only: bool = False) -> list[Change]:
        flavour = self._flavour()
        changes = [self._pipeline(pid, body, check_only) for pid, body in self.assets.pipelines.items()]
        template = copy.deepcopy(self.assets.template)
        retention = self._retention(flavour, check_only)
        if flavour == "ilm":
            template["template"]["settings"]["index.lifecycle.name"] = self.assets.policy_name
        changes.append(self._template(template, check_only))
        changes.append(retention)
        return changes

    # --- engine ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> requests.Response:
        for wait in (*_PUSHBACK_WAITS, None):
            try:
                resp = self.session.request(method, f"{self.url}{path}", json=body, timeout=30)
            except requests.RequestException as exc:
                raise SearchEngineError(f"{method} {path}: no answer from {self.url} ({type(exc).__name__})") from None
            if resp.status_code in ok or resp.status_code not in _PUSHBACK or wait is None:
                break
            self._sleep(wait)
        if resp.status_code not in ok:
            raise SearchEngineError(f"{method} {path}: HTTP {resp.status_code}: {resp.text[:500]}")
        return resp

    def _flavour(self) -> str:
        """ilm (Elasticsearch), ism (OpenSearch with Index Management) or none."""
        info = self._call("GET", "/").json()
        if info.get("version", {}).get("distribution") == "opensearch":
            probe = self._call("GET", "/_plugins/_ism/policies", ok=(200, 400, 404, 405))
            return "ism" if probe.status_code == 200 else "none"
        probe = self._call("GET", "/_ilm/status", ok=(200, 400, 404, 405))
        return "ilm" if probe.status_code == 200 else "none"

    # --- assets ------------------------------------------------------------------------------

    def _pipeline(self, pid: str, body: dict[str, Any], check_only: bool) -> Change:
        resp = self._call("GET", f"/_ingest/pipeline/{pid}", ok=(200, 404))
        current = resp.json().get(pid) if resp.status_code == 200 else None
        if current == body:
            return Change("pipeline", pid, "unchanged")
        action = "created" if current is None else "updated"
        if check_only:
            return Change("pipeline", pid, "would create" if current is None else "would update")
        self._call("PUT", f"/_ingest/pipeline/{pid}", body)
        return Change("pipeline", pid, action)

    def _template(self, template: dict[str, Any], check_only: bool) -> Change:
        name = self.assets.template_name
        body = with_digest(template)
        resp = self._call("GET", f"/_index_template/{name}", ok=(200, 404))
        current = None
        if resp.status_code == 200:
            found = [t for t in resp.json().get("index_templates", []) if t.get("name") == name]
            current = found[0]["index_template"] if found else None
        if current is not None and (current.get("_meta") or {}).get("asci_digest") == body["_meta"]["asci_digest"]:
            return Change("index template", name, "unchanged")
        action = "created" if current is None else "updated"
        if check_only:
            return Change("index template", name, "would create" if current is None else "would update")
        self._call("PUT", f"/_index_template/{name}", body)
        return Change("index template", name, action,
                      "applies to indices created from now on" if action == "updated" else "")

    def _retention(self, flavour: str, check_only: bool) -> Change:
        name = self.assets.policy_name
        if flavour == "none":
            return Change("retention", name, "not available",
                          "the engine has neither ILM nor ISM; see logging/elasticsearch/retention/RETENTION.md")
        if flavour == "ilm":
            return self._ilm(name, check_only)
        return self._ism(name, check_only)

    def _ilm(self, name: str, check_only: bool) -> Change:
        desired = copy.deepcopy(self.assets.ilm_policy)
        mark = digest(desired)
        desired["policy"].setdefault("_meta", {})["asci_digest"] = mark
        resp = self._call("GET", f"/_ilm/policy/{name}", ok=(200, 404))
        current = resp.json().get(name, {}).get("policy") if resp.status_code == 200 else None
        if current is not None and (current.get("_meta") or {}).get("asci_digest") == mark:
            return Change("retention", f"ILM policy {name}", "unchanged")
        if check_only:
            return Change("retention", f"ILM policy {name}", "would create" if current is None else "would update")
        self._call("PUT", f"/_ilm/policy/{name}", desired)
        return Change("retention", f"ILM policy {name}", "created" if current is None else "updated")

    def _ism(self, name: str, check_only: bool) -> Change:
        desired = copy.deepcopy(self.assets.ism_policy)
        mark = digest(desired)
        desired["policy"]["description"] += f" [asci_digest {mark}]"
        resp = self._call("GET", f"/_plugins/_ism/policies/{name}", ok=(200, 404))
        if resp.status_code == 200:
            found = resp.json()
            if mark in (found.get("policy", {}).get("description") or ""):
                return Change("retention", f"ISM policy {name}", "unchanged")
            if check_only:
                return Change("retention", f"ISM policy {name}", "would update")
            # ISM updates are optimistic: they must name the version they replace.
            self._call("PUT", f"/_plugins/_ism/policies/{name}?if_seq_no={found['_seq_no']}"
                              f"&if_primary_term={found['_primary_term']}", desired)
            return Change("retention", f"ISM policy {name}", "updated", "applies to indices created from now on")
        if check_only:
            return Change("retention", f"ISM policy {name}", "would create")
        self._call("PUT", f"/_plugins/_ism/policies/{name}", desired, ok=(200, 201))
        return Change("retention", f"ISM policy {name}", "created")

    # --- removal (tests and `asci logging uninstall`) ---------------------------------------

    def remove(self) -> list[Change]:
        changes = []
        for pid in reversed(list(self.assets.pipelines)):
            resp = self._call("DELETE", f"/_ingest/pipeline/{pid}", ok=(200, 404))
            changes.append(Change("pipeline", pid, "removed" if resp.status_code == 200 else "absent"))
        resp = self._call("DELETE", f"/_index_template/{self.assets.template_name}", ok=(200, 404))
        changes.append(Change("index template", self.assets.template_name,
                              "removed" if resp.status_code == 200 else "absent"))
        return changes
