"""The versioned assets in logging/ are consistent with each other and with what the shipper writes."""
from __future__ import annotations

import json
import re
from typing import Any, Iterator

import yaml

from asci_logging.assets import (ASSETS_DIR, CANONICAL_PREFIX, LOGGING_DIR, load_assets, pipeline_references,
                                 source_names)
from asci_logging.kibana import NDJSON_PATH, saved_objects, to_ndjson

SOURCES = {"autobuild", "asci-core", "registry", "session", "access", "default"}
LEAF_TYPES = {"keyword", "text", "date", "long", "ip", "boolean"}


def mapped_fields(properties: dict[str, Any], prefix: str = "") -> dict[str, str]:
    fields: dict[str, str] = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            fields.update(mapped_fields(spec["properties"], f"{path}."))
        else:
            fields[path] = spec.get("type", "object")
    return fields


TEMPLATE_FIELDS = mapped_fields(load_assets().template["template"]["mappings"]["properties"])


def test_a_pipeline_per_source_and_every_called_pipeline_exists():
    assets = load_assets()
    names = {pid[len(CANONICAL_PREFIX) + 1:] for pid in assets.pipelines}
    assert SOURCES <= names
    for pid, body in assets.pipelines.items():
        missing = pipeline_references(body) - set(assets.pipelines)
        assert not missing, f"{pid} calls {missing}"
    assert source_names()[:3] == ["level", "text", "asci-json"]  # helpers install first


def test_every_pipeline_keeps_failed_events_and_tags_them():
    for pid, body in load_assets().pipelines.items():
        steps = body["on_failure"]
        assert steps[0] == {"append": {"field": "tags", "value": ["asci_parse_failure"], "allow_duplicates": False}}, pid
        assert {"set": {"field": "error.pipeline", "value": pid}} in steps, pid
        assert not any("drop" in s or "fail" in s for s in steps), pid
        assert body["description"]


def test_template_maps_only_the_expected_types_and_the_pipeline_outputs():
    assert set(TEMPLATE_FIELDS.values()) <= LEAF_TYPES | {"object"}
    assert TEMPLATE_FIELDS["@timestamp"] == "date"
    assert TEMPLATE_FIELDS["source.ip"] == "ip"
    assert TEMPLATE_FIELDS["http.response.status_code"] == "long"
    assert TEMPLATE_FIELDS["asci.component"] == "keyword"
    # Fields the pipelines set by name must be mapped (else they are silently not searchable).
    text = "".join(p.read_text() for p in (ASSETS_DIR / "pipelines").glob("*.json"))
    set_fields = set(re.findall(r'"(?:field|target_field)": "([a-z@_][\w.@]*)"', text))
    set_fields |= {f"{m[0]}.{m[1]}" for m in re.findall(r"ctx\.(event|log|build|session|user|url|asci)\.(\w+) =", text)}
    temporary = {f for f in set_fields if f.startswith("asci_")} | {"message", "tags", "asci.fields"}
    objects = {f.rsplit(".", i)[0] for f in TEMPLATE_FIELDS for i in range(1, f.count(".") + 1)}
    unmapped = {f for f in set_fields - temporary if f not in TEMPLATE_FIELDS and f not in objects}
    assert not unmapped, unmapped


def test_rendering_for_another_prefix_renames_everything():
    assets = load_assets("site-logs", retention_days=7)
    dumped = json.dumps([assets.pipelines, assets.template, assets.ilm_policy, assets.ism_policy])
    assert CANONICAL_PREFIX not in dumped
    assert assets.template["index_patterns"] == ["site-logs-*"]
    assert "site-logs-text" in pipeline_references(assets.pipelines["site-logs-session"])
    assert assets.ilm_policy["policy"]["phases"]["delete"]["min_age"] == "7d"
    assert assets.ism_policy["policy"]["ism_template"][0]["index_patterns"] == ["site-logs-*"]
    assert "warm" not in load_assets(retention_days=2).ilm_policy["policy"]["phases"]


def pipelines_named(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pipeline" and isinstance(value, str):
                yield value
            yield from pipelines_named(value)
    elif isinstance(node, list):
        for item in node:
            yield from pipelines_named(item)


def test_journalbeat_and_filebeat_send_only_to_pipelines_that_exist_in_logging():
    available = set(load_assets().pipelines)
    for path in (LOGGING_DIR / "journalbeat" / "journalbeat.yml", LOGGING_DIR / "filebeat" / "filebeat.yml"):
        config = yaml.safe_load(path.read_text())
        named = set(pipelines_named(config))
        assert named, path
        assert named <= available, (path, named - available)
        # The dispatcher then reaches every source pipeline.
        for name in named:
            reached = pipeline_references(load_assets().pipelines[name])
            assert {f"{CANONICAL_PREFIX}-{s}" for s in SOURCES} <= reached


def test_beats_select_the_same_journal_entries_as_the_shipper():
    from asci_core.config import parse_config

    shipper_terms = {t for group in parse_config("").logging.shipper.select for t in group}
    beat = yaml.safe_load((LOGGING_DIR / "journalbeat" / "journalbeat.yml").read_text())
    assert set(beat["journalbeat.inputs"][0]["include_matches"]) == shipper_terms
    filebeat = yaml.safe_load((LOGGING_DIR / "filebeat" / "filebeat.yml").read_text())
    assert set(filebeat["filebeat.inputs"][0]["include_matches.match"]) == shipper_terms


def kibana_fields(obj: dict[str, Any]) -> set[str]:
    attrs = obj["attributes"]
    fields: set[str] = set()
    if "visState" in attrs:
        for agg in json.loads(attrs["visState"])["aggs"]:
            if "field" in agg["params"]:
                fields.add(agg["params"]["field"])
    fields.update(attrs.get("columns", []))
    fields.update(s[0] for s in attrs.get("sort", []))
    search = json.loads(attrs.get("kibanaSavedObjectMeta", {}).get("searchSourceJSON", "{}"))
    query = search.get("query", {}).get("query", "")
    fields.update(re.findall(r"([A-Za-z@_][\w.@]*)\s*:", query))
    return fields


def test_kibana_file_is_the_generator_output():
    assert NDJSON_PATH.read_text() == to_ndjson(saved_objects())


def test_kibana_objects_use_only_template_fields_and_resolve_their_references():
    objects = [json.loads(line) for line in NDJSON_PATH.read_text().splitlines()]
    by_id = {(o["type"], o["id"]) for o in objects}
    kinds = [o["type"] for o in objects]
    assert kinds.count("index-pattern") == 1 and kinds.count("dashboard") >= 2 and kinds.count("visualization") == 4
    view = next(o for o in objects if o["type"] == "index-pattern")
    assert view["attributes"]["title"] == f"{CANONICAL_PREFIX}-*"
    assert load_assets().template["index_patterns"] == [view["attributes"]["title"]]
    for obj in objects:
        unknown = kibana_fields(obj) - set(TEMPLATE_FIELDS)
        assert not unknown, (obj["id"], unknown)
        for ref in obj["references"]:
            assert (ref["type"], ref["id"]) in by_id, (obj["id"], ref)
    titles = " / ".join(o["attributes"]["title"] for o in objects if o["type"] == "visualization")
    for topic in ("errors by component", "builds by outcome", "sessions by environment and user",
                  "failed logins by source address"):
        assert topic in titles


def steps(body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(kind, spec) for p in body["processors"] for kind, spec in p.items()]


def test_colour_codes_are_stripped_before_any_pipeline_reads_the_message():
    # Whatever parses or searches the message (grok, json) comes after the ANSI strip: in the same
    # pipeline, or in one it always calls first. Pipelines come helpers first, so callees are known.
    stripping: set[str] = set()
    for pid, body in load_assets().pipelines.items():
        stripped = False
        for kind, spec in steps(body):
            if kind == "gsub" and spec.get("tag") == "strip-ansi":
                assert spec["field"] == "message", pid
                stripped = True
            elif kind == "pipeline" and "if" not in spec and spec["name"] in stripping:
                stripped = True
            elif kind in ("grok", "json") and spec.get("field") == "message":
                assert stripped, f"{pid}: {kind} {spec.get('tag')} reads the message before colour codes are stripped"
        if stripped:
            stripping.add(pid)


def test_a_date_step_fails_alone_and_comes_after_the_level():
    for pid, body in load_assets().pipelines.items():
        seen_level = False
        for kind, spec in steps(body):
            if kind == "pipeline" and spec["name"].endswith("-level"):
                seen_level = True
            if kind == "date":
                handler = spec.get("on_failure") or []
                assert handler and handler[0]["append"]["value"] == ["asci_parse_failure"], pid
                assert {"set": {"field": "error.pipeline", "value": pid}} in handler, pid
                calls_level = any(k == "pipeline" and s["name"].endswith("-level") for k, s in steps(body))
                assert seen_level or not calls_level, f"{pid}: {spec.get('tag')} comes before the level"
