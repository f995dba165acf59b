"""Kibana saved objects for ASCI logs: a data view, four visualisations, two dashboards, a saved search.

Written in the Kibana 7.10 export format, which Kibana 7.10+/8.x and OpenSearch
Dashboards all import (Stack Management → Saved objects → Import). The versioned
file logging/kibana/asci-logs.ndjson is this module's output for the canonical
prefix; `asci logging kibana` prints the same for the configured prefix.
Every field named here must exist in the index template (a unit test checks).
"""
from __future__ import annotations

import json
from typing import Any

from asci_logging.assets import CANONICAL_PREFIX, LOGGING_DIR

NDJSON_PATH = LOGGING_DIR / "kibana" / f"{CANONICAL_PREFIX}.ndjson"
INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"
ERROR_LEVELS = "log.level : (error or critical or alert or emergency)"
FAILED_LOGINS = "event.category : authentication and event.outcome : failure"


def _search_source(query: str) -> str:
    return json.dumps({"query": {"query": query, "language": "kuery"}, "filter": [], "indexRefName": INDEX_REF})


def _count() -> dict[str, Any]:
    return {"id": "1", "enabled": True, "type": "count", "schema": "metric", "params": {}}


def _terms(agg_id: str, field: str, schema: str, size: int, label: str) -> dict[str, Any]:
    return {"id": agg_id, "enabled": True, "type": "terms", "schema": schema,
            "params": {"field": field, "size": size, "order": "desc", "orderBy": "1", "otherBucket": True,
                       "otherBucketLabel": "Other", "missingBucket": True, "missingBucketLabel": "(none)",
                       "customLabel": label}}


def _date_histogram(interval: str) -> dict[str, Any]:
    return {"id": "2", "enabled": True, "type": "date_histogram", "schema": "segment",
            "params": {"field": "@timestamp", "interval": interval, "min_doc_count": 1, "extended_bounds": {},
                       "drop_partials": False, "useNormalizedEsInterval": True}}


def _bar_params() -> dict[str, Any]:
    return {
        "type": "histogram", "grid": {"categoryLines": False},
        "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "bottom", "show": True,
                          "style": {}, "scale": {"type": "linear"},
                          "labels": {"show": True, "filter": True, "truncate": 100}, "title": {}}],
        "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left", "show": True,
                       "style": {}, "scale": {"type": "linear", "mode": "normal"},
                       "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
                       "title": {"text": "Count"}}],
        "seriesParams": [{"show": True, "type": "histogram", "mode": "stacked", "data": {"label": "Count", "id": "1"},
                          "valueAxis": "ValueAxis-1", "drawLinesBetweenPoints": True, "lineWidth": 2,
                          "showCircles": True}],
        "addTooltip": True, "addLegend": True, "legendPosition": "right", "times": [], "addTimeMarker": False,
        "labels": {"show": False},
        "thresholdLine": {"show": False, "value": 10, "width": 1, "style": "full", "color": "#E7664C"},
    }


def _table_params() -> dict[str, Any]:
    return {"perPage": 20, "showPartialRows": False, "showMetricsAtAllLevels": False, "showTotal": True,
            "totalFunc": "sum", "percentageCol": ""}


def _visualization(vid: str, title: str, description: str, vis_type: str, params: dict[str, Any],
                   aggs: list[dict[str, Any]], query: str, data_view: str) -> dict[str, Any]:
    vis_state = {"title": title, "type": vis_type, "params": params, "aggs": aggs}
    return {
        "id": vid, "type": "visualization",
        "attributes": {
            "title": title, "description": description, "version": 1, "uiStateJSON": "{}",
            "visState": json.dumps(vis_state),
            "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source(query)},
        },
        "references": [{"name": INDEX_REF, "type": "index-pattern", "id": data_view}],
        "migrationVersion": {"visualization": "7.10.0"},
    }


def _dashboard(did: str, title: str, description: str, panels: list[str]) -> dict[str, Any]:
    layout = []
    for i, vid in enumerate(panels):
        layout.append({"version": "7.10.0", "type": "visualization", "panelIndex": str(i + 1),
                       "gridData": {"x": 0 if i % 2 == 0 else 24, "y": (i // 2) * 15, "w": 24, "h": 15,
                                    "i": str(i + 1)},
                       "embeddableConfig": {}, "panelRefName": f"panel_{i}"})
    return {
        "id": did, "type": "dashboard",
        "attributes": {
            "title": title, "description": description, "version": 1, "timeRestore": True,
            "timeFrom": "now-7d", "timeTo": "now", "refreshInterval": {"pause": False, "value": 60000},
            "optionsJSON": json.dumps({"useMargins": True, "hidePanelTitles": False}),
            "panelsJSON": json.dumps(layout),
            "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(
                {"query": {"query": "", "language": "kuery"}, "filter": []})},
        },
        "references": [{"name": f"panel_{i}", "type": "visualization", "id": vid} for i, vid in enumerate(panels)],
        "migrationVersion": {"dashboard": "7.9.3"},
    }


def saved_objects(prefix: str = CANONICAL_PREFIX) -> list[dict[str, Any]]:
    view = prefix
    objects: list[dict[str, Any]] = [{
        "id": view, "type": "index-pattern",
        "attributes": {"title": f"{prefix}-*", "timeFieldName": "@timestamp"},
        "references": [], "migrationVersion": {"index-pattern": "7.6.0"},
    }]
    objects.append(_visualization(
        f"{prefix}-errors-by-component", "ASCI: errors by component over time",
        "Log lines at error level or worse, stacked by ASCI component", "histogram", _bar_params(),
        [_count(), _date_histogram("auto"), _terms("3", "asci.component", "group", 10, "Component")],
        ERROR_LEVELS, view))
    objects.append(_visualization(
        f"{prefix}-builds-by-outcome", "ASCI: builds by outcome per day",
        "Finished builds (autobuild lines with build.outcome) per day, by outcome", "histogram", _bar_params(),
        [_count(), _date_histogram("d"), _terms("3", "build.outcome", "group", 5, "Outcome")],
        "event.dataset : autobuild and build.outcome : *", view))
    sessions = [
        {"id": "1", "enabled": True, "type": "cardinality", "schema": "metric",
         "params": {"field": "container.name", "customLabel": "Sessions"}},
        _terms("2", "asci.environment", "bucket", 20, "Environment"),
        _terms("3", "asci.user", "bucket", 50, "User"),
    ]
    objects.append(_visualization(
        f"{prefix}-sessions-by-environment-user", "ASCI: sessions by environment and user",
        "Desktop session containers that logged in the period, by environment and user", "table",
        _table_params(), sessions, "event.dataset : session", view))
    objects.append(_visualization(
        f"{prefix}-failed-logins", "ASCI: failed logins by source address",
        "Failed authentications (registry, proxy, VNC, launcher) by client address and source", "table",
        _table_params(),
        [_count(), _terms("2", "source.ip", "bucket", 25, "Source address"),
         _terms("3", "event.dataset", "bucket", 10, "Where")],
        FAILED_LOGINS, view))
    objects.append({
        "id": f"{prefix}-parse-failures", "type": "search",
        "attributes": {
            "title": "ASCI: lines the pipelines could not parse, and dead letters",
            "description": "Kept events tagged by a pipeline's on_failure, and documents the engine rejected",
            "columns": ["event.dataset", "log.level", "error.pipeline", "error.message", "message"],
            "sort": [["@timestamp", "desc"]], "version": 1,
            "kibanaSavedObjectMeta": {"searchSourceJSON": _search_source("tags : (asci_parse_failure or dead_letter)")},
        },
        "references": [{"name": INDEX_REF, "type": "index-pattern", "id": view}],
        "migrationVersion": {"search": "7.9.3"},
    })
    objects.append(_dashboard(f"{prefix}-operations", "ASCI operations",
                              "What breaks and who knocks: errors by component, failed logins",
                              [f"{prefix}-errors-by-component", f"{prefix}-failed-logins"]))
    objects.append(_dashboard(f"{prefix}-activity", "ASCI activity",
                              "What the platform does: builds by outcome, desktop sessions",
                              [f"{prefix}-builds-by-outcome", f"{prefix}-sessions-by-environment-user"]))
    return objects


def to_ndjson(objects: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(o, sort_keys=True) + "\n" for o in objects)
