"""Each ingest pipeline, run by the real engine through `_simulate`, on representative and broken lines.

Broken lines must come out kept (message intact) and tagged, never dropped.
"""
from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any, Iterator

import pytest
import requests
import yaml

from tests.integration.logging_support import ASCI, LogSite

BASE = {"@timestamp": "2026-11-26T05:00:00.000000Z", "log": {"level": "info", "syslog": {"priority": 6}},
        "event": {"dataset": "test"}}

# Lines as the services really write them (registry: captured from the stack's registry log).
JSONLOG_BUILD = ('{"timestamp":"2026-11-26T05:30:00.123+00:00","level":"info","component":"autobuild",'
                 '"message":"build finished","build_id":"b-42","repository":"BL/desktop-base","tag":"v1.2.0",'
                 '"outcome":"success","duration_s":12.5,"phase":"push"}')
JSONLOG_LOGIN = ('{"timestamp":"2026-11-26T05:31:00.000+00:00","level":"warning","component":"asci_core",'
                 '"message":"login refused","action":"login","outcome":"failure","source_ip":"192.0.2.7","user":"mallory"}')
JSONLOG_SESSION = ('{"timestamp":"2026-11-26T05:32:00.000+00:00","level":"info","component":"asci_core",'
                   '"message":"session started","session_id":"s-1","user":"alice","environment":"mx","node":"n1"}')
REGISTRY_FAILED_LOGIN = (
    '{"go.version":"go1.19.8","http.request.host":"localhost:5000","http.request.id":"31481f1c-15c3-4033-93df-c73657567169",'
    '"http.request.method":"GET","http.request.remoteaddr":"198.51.100.9:51790","http.request.uri":"/v2/_catalog",'
    '"http.request.useragent":"curl/7.88.1","level":"error","msg":"error authenticating user \\"nobody\\": authentication failure",'
    '"time":"2026-11-26T05:52:11.674012351Z"}')
REGISTRY_RESPONSE = (
    '{"auth.user.name":"asci-admin","err.code":"name unknown","err.detail":{"name":"bl/x"},'
    '"err.message":"repository name not known to registry","go.version":"go1.19.8","http.request.host":"127.0.0.1:5000",'
    '"http.request.id":"861c1c47","http.request.method":"GET","http.request.remoteaddr":"127.0.0.1:57886",'
    '"http.request.uri":"/v2/bl/x/tags/list","http.request.useragent":"python-requests/2.34.2",'
    '"http.response.contenttype":"application/json; charset=utf-8","http.response.duration":"308.964049ms",'
    '"http.response.status":404,"http.response.written":172,"level":"error","msg":"response completed with error",'
    '"time":"2026-11-26T05:35:14.749688555Z","vars.name":"bl/x"}')
REGISTRY_ACCESS = '127.0.0.1 - - [26/Nov/2026:05:38:50 +0000] "GET /v2/ HTTP/1.1" 401 87 "" "python-requests/2.34.2"'
PROXY_FAILED_LOGIN = '203.0.113.5 - alice [26/Nov/2026:05:30:00 +0000] "POST /login HTTP/1.1" 401 12 "-" "Mozilla/5.0" 0.004'
PROXY_AIOHTTP = '127.0.0.1 [26/Nov/2026:05:30:01 +0000] "GET /api/sessions HTTP/1.1" 200 512 "-" "curl/7.88.1"'


@pytest.fixture(scope="module")
def log_site(stack) -> Iterator[LogSite]:
    # One set of pipelines for the whole module: `_simulate` writes nothing, so tests cannot disturb each other.
    site = LogSite(f"asci-test-logging-pipelines-{uuid.uuid4().hex[:8]}", stack.search_url)
    site.install()
    yield site
    site.remove()


def simulate(site, source: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    resp = requests.post(f"{site.url}/_ingest/pipeline/{site.prefix}-{source}/_simulate",
                         json={"docs": [{"_source": d} for d in docs]}, timeout=30)
    resp.raise_for_status()
    results = resp.json()["docs"]
    # A pipeline that lets an error escape fails the document: that must never happen.
    assert all("error" not in r for r in results), results
    return [r["doc"]["_source"] for r in results]


def line(message: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(BASE)), "message": message}


def assert_kept_and_tagged(out: dict[str, Any], message: Any, pipeline: str) -> None:
    assert out["message"] == message
    assert "asci_parse_failure" in out["tags"]
    assert out["error"]["message"] and out["error"]["pipeline"] == pipeline


def test_autobuild_parses_json_lines_and_lifts_build_facts(log_site):
    good, broken, bad_time, traceback = simulate(log_site, "autobuild", [
        line(JSONLOG_BUILD), line('{"timestamp":"2026-11-26T05:30:00Z","level":'),
        line('{"timestamp":"yesterday","level":"info","message":"x"}'), line("Traceback (most recent call last):")])
    assert good["@timestamp"] == "2026-11-26T05:30:00.123Z"
    assert good["message"] == "build finished" and good["log"]["level"] == "info"
    assert good["asci"] == {"component": "autobuild", "fields": {"phase": "push"}}
    assert good["build"] == {"id": "b-42", "repository": "BL/desktop-base", "tag": "v1.2.0",
                             "outcome": "success", "duration_ms": 12500}
    assert "tags" not in good
    assert_kept_and_tagged(broken, '{"timestamp":"2026-11-26T05:30:00Z","level":', f"{log_site.prefix}-asci-json")
    assert broken["error"]["id"] == "parse-json"
    assert bad_time["error"]["id"] == "json-time" and "asci_parse_failure" in bad_time["tags"]
    assert traceback["log"]["level"] == "error" and "tags" not in traceback


def test_asci_core_marks_logins_and_sessions(log_site):
    login, session = simulate(log_site, "asci-core", [line(JSONLOG_LOGIN), line(JSONLOG_SESSION)])
    assert login["event"] == {"dataset": "test", "action": "login", "outcome": "failure", "category": "authentication"}
    assert login["source"] == {"ip": "192.0.2.7"} and login["user"] == {"name": "mallory"}
    assert login["log"]["level"] == "warning"
    assert session["session"] == {"id": "s-1"} and session["asci"]["environment"] == "mx"
    assert session["asci"]["user"] == "alice" and session["asci"]["node"] == "n1"
    (broken,) = simulate(log_site, "asci-core", [line('{"message": "unterminated')])
    assert_kept_and_tagged(broken, '{"message": "unterminated', f"{log_site.prefix}-asci-json")


def test_registry_json_and_access_lines(log_site):
    failed, response, access = simulate(log_site, "registry",
                                        [line(REGISTRY_FAILED_LOGIN), line(REGISTRY_RESPONSE), line(REGISTRY_ACCESS)])
    assert failed["event"]["category"] == "authentication" and failed["event"]["outcome"] == "failure"
    assert failed["source"] == {"ip": "198.51.100.9"} and failed["user"] == {"name": "nobody"}
    assert failed["@timestamp"] == "2026-11-26T05:52:11.674Z" and failed["log"]["level"] == "error"
    assert response["http"]["response"] == {"status_code": 404, "body": {"bytes": 172}}
    assert response["event"]["duration"] == 308964049
    assert response["registry"]["repository"] == "bl/x" and response["error"]["code"] == "name unknown"
    assert response["user"] == {"name": "asci-admin"} and response["url"] == {"original": "/v2/bl/x/tags/list"}
    assert access["http"]["response"]["status_code"] == 401 and access["url"]["original"] == "/v2/"
    assert access["source"]["ip"] == "127.0.0.1" and "category" not in access["event"]  # a challenge, not a failure
    broken_json, bad_duration = simulate(log_site, "registry", [
        line('{"level":"info","msg":'), line('{"level":"info","msg":"x","http.response.duration":"12parsecs"}')])
    assert_kept_and_tagged(broken_json, '{"level":"info","msg":', f"{log_site.prefix}-registry")
    assert "asci_parse_failure" in bad_duration["tags"] and "12parsecs" in bad_duration["error"]["message"]
    token = ('{"timestamp":"2026-11-26T06:23:35.632+00:00","level":"warning","component":"registry",'
             '"message":"registry token refused","user":"eve","reason":"wrong user or password"}')
    (refused,) = simulate(log_site, "registry", [line(token)])
    assert refused["message"] == "registry token refused" and refused["log"]["level"] == "warning"
    assert refused["event"]["category"] == "authentication" and refused["event"]["outcome"] == "failure"
    assert refused["user"] == {"name": "eve"} and refused["asci"]["fields"] == {"reason": "wrong user or password"}
    assert refused["@timestamp"] == "2026-11-26T06:23:35.632Z" and "tags" not in refused
    (garbage,) = simulate(log_site, "registry", [line("time=now something odd")])
    assert_kept_and_tagged(garbage, "time=now something odd", f"{log_site.prefix}-access")


def test_session_free_text_gets_level_words_and_vnc_failures(log_site):
    warn, vnc, plain, bracket = simulate(log_site, "session", [
        line("2026-11-26 05:00:00,123 WARNING disk almost full"),
        line(" Connections: closed: 172.17.0.1::43210 (Authentication failure)"),
        line("no errors found"), line("[ERROR] xfce4-panel crashed")])
    assert warn["log"]["level"] == "warning" and bracket["log"]["level"] == "error"
    assert plain["log"]["level"] == "info"
    assert vnc["source"] == {"ip": "172.17.0.1", "port": 43210}
    assert vnc["event"]["category"] == "authentication" and vnc["event"]["outcome"] == "failure"
    assert all("tags" not in d for d in (warn, vnc, plain, bracket))
    missing, not_text = simulate(log_site, "session", [dict(BASE), line({"object": 1})])
    assert "asci_parse_failure" in missing["tags"] and missing["error"]["id"] == "require-text"
    assert_kept_and_tagged(not_text, {"object": 1}, f"{log_site.prefix}-text")


def test_access_lines_of_the_proxy(log_site):
    failed, ok, garbage = simulate(log_site, "access", [line(PROXY_FAILED_LOGIN), line(PROXY_AIOHTTP), line("GET /")])
    assert failed["source"] == {"ip": "203.0.113.5"} and failed["user"] == {"name": "alice"}
    assert failed["http"] == {"version": "1.1", "request": {"method": "POST"},
                              "response": {"status_code": 401, "body": {"bytes": 12}}}
    assert failed["event"]["duration"] == 4_000_000 and failed["event"]["outcome"] == "failure"
    assert failed["@timestamp"] == "2026-11-26T05:30:00.000Z" and failed["user_agent"] == {"original": "Mozilla/5.0"}
    assert ok["url"] == {"original": "/api/sessions"} and ok["log"]["level"] == "info" and "user" not in ok
    assert_kept_and_tagged(garbage, "GET /", f"{log_site.prefix}-access")


def test_default_keeps_anything(log_site):
    plain, level, empty = simulate(log_site, "default", [line("just text"), line("level=error msg=boom"), line("")])
    assert plain["message"] == "just text" and plain["log"]["level"] == "info"
    assert level["log"]["level"] == "error"
    assert empty["message"] == "" and "tags" not in empty
    (broken,) = simulate(log_site, "default", [line(["a", "list"])])
    assert_kept_and_tagged(broken, ["a", "list"], f"{log_site.prefix}-text")


def test_beats_dispatcher_routes_journalbeat_events(log_site):
    journalbeat_event = {
        "@timestamp": "2026-11-26T05:30:00.000Z", "message": JSONLOG_BUILD,
        "syslog": {"priority": 6, "identifier": "asci/autobuild/worker-1"},
        "container": {"name": "worker-1", "id": "abc"}, "host": {"hostname": "node1"},
        "journald": {"custom": {"asci_component": "autobuild", "image_name": "asci/autobuild:1"}},
    }
    unit_event = {"@timestamp": "2026-11-26T05:30:00.000Z", "message": REGISTRY_ACCESS,
                  "syslog": {"priority": 6, "identifier": "docker-registry"}}
    resp = requests.post(f"{log_site.url}/_ingest/pipeline/{log_site.prefix}-beats/_simulate",
                         json={"docs": [{"_source": journalbeat_event}, {"_source": unit_event}]}, timeout=30).json()
    build, registry = (d["doc"] for d in resp["docs"])
    assert build["_index"].startswith(f"<{log_site.prefix}-autobuild-{{2026.11.26")
    assert build["_source"]["build"]["outcome"] == "success" and build["_source"]["asci"]["component"] == "autobuild"
    assert build["_source"]["container"]["image"] == {"name": "asci/autobuild:1"}
    assert build["_source"]["event"]["dataset"] == "autobuild"
    assert registry["_index"].startswith(f"<{log_site.prefix}-registry-")
    assert registry["_source"]["http"]["response"]["status_code"] == 401


def test_install_is_idempotent_and_reports_changes(tmp_path, stack, unique):
    prefix = unique("inst")
    config = tmp_path / "asci.yaml"
    config.write_text(yaml.safe_dump({"logging": {"prefix": prefix}}))

    def install(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([ASCI, "-c", str(config), "logging", "install", *extra],
                              capture_output=True, text=True, timeout=120)
    try:
        check = install("--check")
        assert check.returncode == 1 and "would create" in check.stdout
        first = install("--json")
        assert first.returncode == 0, first.stderr
        actions = {(c["kind"], c["name"]): c["action"] for c in json.loads(first.stdout)}
        assert actions[("pipeline", f"{prefix}-registry")] == "created"
        assert actions[("index template", prefix)] == "created"
        second = install("--json")
        assert {c["action"] for c in json.loads(second.stdout) if c["kind"] != "retention"} == {"unchanged"}
        assert install("--check").returncode == 0
        # Someone edits a pipeline by hand: install puts ours back and says so.
        requests.put(f"{stack.search_url}/_ingest/pipeline/{prefix}-default",
                     json={"description": "hand-made", "processors": []}, timeout=30).raise_for_status()
        third = {c["name"]: c["action"] for c in json.loads(install("--json").stdout) if c["kind"] == "pipeline"}
        assert third[f"{prefix}-default"] == "updated" and third[f"{prefix}-session"] == "unchanged"
    finally:
        subprocess.run([ASCI, "-c", str(config), "logging", "uninstall"], capture_output=True, timeout=60)
    gone = requests.get(f"{stack.search_url}/_ingest/pipeline/{prefix}-default", timeout=30)
    assert gone.status_code == 404


def test_every_source_survives_an_empty_document(log_site):
    for source in ("autobuild", "asci-core", "registry", "session", "access", "default"):
        (out,) = simulate(log_site, source, [{}])
        assert "asci_parse_failure" in out["tags"], source


def test_a_timestamp_that_does_not_parse_costs_only_the_timestamp(log_site):
    build = ('{"timestamp":"26/11/2026 5:30","level":"error","component":"autobuild","message":"build finished",'
             '"build_id":"b-9","outcome":"failure","phase":"push"}')
    core = '{"timestamp":1764135000,"level":"warning","message":"login refused","action":"login","user":"eve"}'
    (autobuild,) = simulate(log_site, "autobuild", [line(build)])
    (asci_core,) = simulate(log_site, "asci-core", [line(core)])
    (registry,) = simulate(log_site, "registry", [line('{"level":"error","msg":"upload failed","time":"soon"}')])
    (access,) = simulate(log_site, "access", [line(
        '192.0.2.1 - - [31/Feb/2026:05:38:50 +0000] "GET /v2/ HTTP/1.1" 503 87 "-" "curl/8"')])
    for out, level, raw, step in ((autobuild, "error", "26/11/2026 5:30", "json-time"),
                                  (asci_core, "warning", "1764135000", "json-time"),
                                  (registry, "error", "soon", "registry-time"),
                                  (access, "error", "31/Feb/2026:05:38:50 +0000", "access-time")):
        assert out["log"]["level"] == level, out
        assert out["@timestamp"] == BASE["@timestamp"]  # the journal's time stays
        assert out["asci"]["unparsed_timestamp"] == raw
        assert "asci_parse_failure" in out["tags"] and out["error"]["id"] == step
        assert not any(k.startswith("asci_") for k in out), out
    # The rest of the line is still parsed.
    assert autobuild["message"] == "build finished" and autobuild["build"] == {"id": "b-9", "outcome": "failure"}
    assert asci_core["event"]["category"] == "authentication" and asci_core["user"] == {"name": "eve"}
    assert registry["message"] == "upload failed"
    assert access["http"]["response"]["status_code"] == 503 and access["url"] == {"original": "/v2/"}


def test_a_failure_after_the_level_word_keeps_the_level(log_site):
    (bad_duration,) = simulate(log_site, "registry", [
        line('{"level":"warn","msg":"x","http.response.duration":"12parsecs"}')])
    assert "asci_parse_failure" in bad_duration["tags"] and bad_duration["log"]["level"] == "warning"


ESC = "\x1b"


def test_colour_codes_never_hide_the_level(log_site):
    red = f"{ESC}[31mERROR{ESC}[0m disk full"
    bold = f"{ESC}[1;33mWARNING:{ESC}[0m no GL acceleration"
    titled = f"{ESC}]0;xterm title{ESC}\\[{ESC}[91mcritical{ESC}[39m] panel crashed"
    cursor = f"{ESC}[2K{ESC}[1G2026-11-26 05:00:00 {ESC}[31mERR{ESC}[0m x"
    for source in ("session", "default", "autobuild", "asci-core"):
        outs = simulate(log_site, source, [line(red), line(bold), line(titled), line(cursor)])
        assert [o["log"]["level"] for o in outs] == ["error", "warning", "critical", "error"], source
        assert [o["message"] for o in outs] == ["ERROR disk full", "WARNING: no GL acceleration",
                                                "[critical] panel crashed", "2026-11-26 05:00:00 ERR x"], source
        assert [o["event"]["original"] for o in outs] == [red, bold, titled, cursor], source
        assert all("tags" not in o for o in outs), source
    # Colour around a JSON line, and inside its level.
    coloured_json = (f'{ESC}[32m{{"timestamp":"2026-11-26T05:30:00Z","level":"\\u001b[31merror\\u001b[0m",'
                     f'"message":"m","build_id":"b-1"}}{ESC}[0m')
    (build,) = simulate(log_site, "autobuild", [line(coloured_json)])
    assert build["log"]["level"] == "error" and build["message"] == "m" and build["build"] == {"id": "b-1"}
    registry_json, registry_access = simulate(log_site, "registry", [
        line(f'{ESC}[0m{{"level":"error","msg":"boom","time":"2026-11-26T05:52:11Z"}}'),
        line(f"{ESC}[36m{REGISTRY_ACCESS}{ESC}[0m")])
    assert registry_json["log"]["level"] == "error" and registry_json["message"] == "boom"
    assert registry_access["http"]["response"]["status_code"] == 401 and "tags" not in registry_access
    (proxy,) = simulate(log_site, "access", [line(f"{ESC}[1m{PROXY_FAILED_LOGIN}")])
    assert proxy["event"]["outcome"] == "failure" and proxy["message"] == PROXY_FAILED_LOGIN
    # Plain lines are left exactly as they were, with no copy.
    (plain,) = simulate(log_site, "session", [line("[ERROR] no colour")])
    assert plain["log"]["level"] == "error" and "original" not in plain["event"]


def test_colour_codes_through_the_beats_dispatcher(log_site):
    event = {"@timestamp": "2026-11-26T05:30:00.000Z", "message": f"{ESC}[31mERROR{ESC}[0m: xfwm4 died",
             "syslog": {"priority": 6, "identifier": "asci/session/desk-1"},
             "journald": {"custom": {"asci_component": "session"}}}
    resp = requests.post(f"{log_site.url}/_ingest/pipeline/{log_site.prefix}-beats/_simulate",
                         json={"docs": [{"_source": event}]}, timeout=30).json()
    out = resp["docs"][0]["doc"]["_source"]
    assert out["log"]["level"] == "error" and out["message"] == "ERROR: xfwm4 died"


def count_fields(value: Any) -> int:
    """Mapped fields a value adds under a dynamic object: every key's dotted segments, nested objects too."""
    if isinstance(value, dict):
        return sum(1 + k.count(".") + count_fields(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(count_fields(v) for v in value)
    return 0


def test_one_json_line_cannot_spend_the_field_budget(log_site):
    wide = {"timestamp": "2026-11-26T05:30:00Z", "level": "error", "message": "wide", "zz_build": "x",
            **{f"k{i:04d}": i for i in range(1500)}, "build_id": "b-5", "outcome": "failure"}
    nested = {"level": "info", "message": "deep", "a": {f"n{i}": {"x": 1, "y.z": 2} for i in range(100)},
              "b": [{"c": 1}, {"d": 2}], "small": 1}
    few = {"level": "info", "message": "few", **{f"f{i}": i for i in range(20)}}
    outs = simulate(log_site, "autobuild", [line(json.dumps(d)) for d in (wide, nested, few)])
    capped, deep, ordinary = outs
    for out, original in ((capped, wide), (deep, nested)):
        assert count_fields(out["asci"].get("fields", {})) <= 64, out["asci"]
        assert "asci_fields_capped" in out["tags"] and out["asci"]["fields_dropped"] > 0
        assert json.loads(out["event"]["original"]) == original  # nothing lost: the line is kept unparsed
        assert out["log"]["level"] == original["level"] and out["message"] == original["message"]
    # Fields the source pipeline lifts are kept first (2 of the 64), then the rest in name order.
    assert capped["build"] == {"id": "b-5", "outcome": "failure"}
    assert set(capped["asci"]["fields"]) == {f"k{i:04d}" for i in range(62)}
    assert capped["asci"]["fields_dropped"] == 1500 + 1 - 62
    assert deep["asci"]["fields"] == {"b": [{"c": 1}, {"d": 2}], "small": 1}
    assert ordinary["asci"]["fields"] == {f"f{i}": i for i in range(20)} and "tags" not in ordinary
    registry_wide = {"level": "info", "msg": "wide", **{f"r.{i:04d}": i for i in range(200)}}
    (registry,) = simulate(log_site, "registry", [line(json.dumps(registry_wide))])
    assert len(registry["asci"]["fields"]) == 64 and registry["asci"]["fields_dropped"] == 200 - 64
    assert "asci_fields_capped" in registry["tags"] and json.loads(registry["event"]["original"]) == registry_wide
