"""Choosing the ingest pipeline for a journal entry from the routing table in the config.

Routes are tried in order; a route matches when every criterion it names holds
(component label exactly, container name or SYSLOG_IDENTIFIER by regular
expression). The answer depends only on those three fields, so it is cached per
distinct combination: a busy host has few of them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from asci_logging.settings import RouteSettings

_CACHE_LIMIT = 4096


@dataclass(frozen=True)
class Route:
    pipeline: str  # the full pipeline id, prefix included
    dataset: str


@dataclass(frozen=True)
class _Rule:
    route: Route
    component: str | None
    container_name: re.Pattern[str] | None
    identifier: re.Pattern[str] | None

    def matches(self, component: str | None, container_name: str | None, identifier: str | None) -> bool:
        if self.component is not None and component != self.component:
            return False
        if self.container_name is not None and (container_name is None or not self.container_name.search(container_name)):
            return False
        if self.identifier is not None and (identifier is None or not self.identifier.search(identifier)):
            return False
        return True


def pipeline_id(prefix: str, source: str) -> str:
    return f"{prefix}-{source}"


class Router:
    def __init__(self, prefix: str, routes: list[RouteSettings], default_pipeline: str):
        self._rules: list[_Rule] = []
        for i, r in enumerate(routes):
            if r.component is None and r.container_name is None and r.identifier is None:
                raise ValueError(f"logging.shipper.routes[{i}] matches nothing: give component, "
                                 "container_name or identifier")
            self._rules.append(_Rule(
                Route(pipeline_id(prefix, r.pipeline), r.dataset or r.pipeline),
                r.component,
                re.compile(r.container_name) if r.container_name is not None else None,
                re.compile(r.identifier) if r.identifier is not None else None,
            ))
        self.default = Route(pipeline_id(prefix, default_pipeline), default_pipeline)
        self._cache: dict[tuple[bytes | None, bytes | None, bytes | None], Route] = {}

    @property
    def pipelines(self) -> set[str]:
        return {r.route.pipeline for r in self._rules} | {self.default.pipeline}

    def route(self, component: bytes | None, container_name: bytes | None, identifier: bytes | None) -> Route:
        key = (component, container_name, identifier)
        found = self._cache.get(key)
        if found is not None:
            return found
        found = self.decide(*(v.decode("utf-8", "replace") if v is not None else None for v in key))
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = found
        return found

    def decide(self, component: str | None, container_name: str | None, identifier: str | None) -> Route:
        for rule in self._rules:
            if rule.matches(component, container_name, identifier):
                return rule.route
        return self.default
