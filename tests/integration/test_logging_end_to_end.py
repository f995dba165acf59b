"""Containers of three components → journald → `asci logging ship` → the right index, pipeline and types.

Real Docker containers with the journald driver and the options from
`log_config()`, the real journal, the real shipper process, the real engine.
"""
from __future__ import annotations

import shlex

from asci_logging.container_logging import log_config
from tests.conftest import LABELS
from tests.integration.logging_support import (journal_count, log_site, metrics,  # noqa: F401 (fixture)
                                                    ship_until_idle, wait_until, write_config)

AUTOBUILD_LINES = [
    '{"timestamp":"2026-11-26T05:30:00.100+00:00","level":"info","component":"autobuild","message":"clone done","build_id":"b-7","phase":"clone"}',
    '{"timestamp":"2026-11-26T05:30:09.900+00:00","level":"error","component":"autobuild","message":"build finished","build_id":"b-7","repository":"BL/mx","tag":"v2.0.1","outcome":"failure","duration_s":9.8}',
]
REGISTRY_LINES = [
    '{"go.version":"go1.19.8","http.request.host":"127.0.0.1:5000","http.request.id":"a1","http.request.method":"GET",'
    '"http.request.remoteaddr":"198.51.100.4:40000","http.request.uri":"/v2/_catalog","http.request.useragent":"curl/7.88.1",'
    '"level":"error","msg":"error authenticating user \\"eve\\": authentication failure","time":"2026-11-26T05:31:00.000000001Z"}',
    '198.51.100.4 - - [26/Nov/2026:05:31:00 +0000] "GET /v2/_catalog HTTP/1.1" 401 145 "" "curl/7.88.1"',
]
SESSION_LINES = ["Xvnc TigerVNC 1.12.0 - built Nov 2026", "WARNING: no GL acceleration",
                 " Connections: closed: 203.0.113.8::51000 (Authentication failure)"]


def run_container(docker_client, stack, component: str, name: str, script: str, **who: str) -> None:
    logging = log_config(component, name, **who)
    docker_client.containers.run(stack.config.stack.base_image.tiny_name, ["sh", "-c", script], name=name,
                                 remove=True, labels={**LABELS, **logging.labels}, log_config=logging.log_config)


def printf_lines(lines: list[str]) -> str:
    return "; ".join(f"printf '%s\\n' {shlex.quote(line)}" for line in lines)


def wait_for_journal(names_and_counts: dict[str, int]) -> None:
    for name, n in names_and_counts.items():
        wait_until(lambda: journal_count(CONTAINER_NAME=name) >= n, 20, what=f"{n} journal entries of {name}")


def by_message(site, index: str) -> dict[str, dict]:
    return {h["_source"]["message"]: h for h in site.documents(index)}


def test_three_components_arrive_parsed_in_their_own_indices(tmp_path, docker_client, stack, unique, log_site):
    names = {"autobuild": unique("build"), "registry": unique("reg"), "session": unique("desk")}
    run_container(docker_client, stack, "autobuild", names["autobuild"], printf_lines(AUTOBUILD_LINES))
    run_container(docker_client, stack, "registry", names["registry"], printf_lines(REGISTRY_LINES))
    run_container(docker_client, stack, "session", names["session"], printf_lines(SESSION_LINES),
                  user="alice", environment="mx-beamline")
    wait_for_journal({names["autobuild"]: 2, names["registry"]: 2, names["session"]: 3})

    config = write_config(tmp_path, log_site.prefix, [[f"CONTAINER_NAME={n}" for n in names.values()]])
    ship_until_idle(config)
    assert metrics(tmp_path)["events_sent"] == 7 and metrics(tmp_path)["events_failed"] == 0

    builds = by_message(log_site, "autobuild-*")
    assert set(builds) == {"clone done", "build finished"}
    finished = builds["build finished"]
    assert finished["_index"].startswith(f"{log_site.prefix}-autobuild-20")
    src = finished["_source"]
    assert src["build"] == {"id": "b-7", "repository": "BL/mx", "tag": "v2.0.1", "outcome": "failure",
                            "duration_ms": 9800}
    assert src["@timestamp"] == "2026-11-26T05:30:09.900Z" and src["log"]["level"] == "error"
    assert src["container"]["name"] == names["autobuild"] and src["container"]["image"]["name"] == "asci/tiny:latest"
    assert len(src["container"]["id"]) == 64 and src["host"]["name"]
    assert src["asci"]["component"] == "autobuild" and src["event"]["dataset"] == "autobuild"
    assert src["log"]["syslog"]["appname"] == f"asci/autobuild/{names['autobuild']}"

    registry = by_message(log_site, "registry-*")
    failed = registry['error authenticating user "eve": authentication failure']["_source"]
    assert failed["event"]["category"] == "authentication" and failed["source"]["ip"] == "198.51.100.4"
    access = registry[REGISTRY_LINES[1]]["_source"]
    assert access["http"]["response"]["status_code"] == 401 and access["http"]["request"]["method"] == "GET"

    sessions = by_message(log_site, "session-*")
    assert set(sessions) == set(SESSION_LINES)
    assert sessions["WARNING: no GL acceleration"]["_source"]["log"]["level"] == "warning"
    vnc = sessions[SESSION_LINES[2]]["_source"]
    assert vnc["asci"] == {"component": "session", "user": "alice", "environment": "mx-beamline"}
    assert vnc["source"]["ip"] == "203.0.113.8" and vnc["event"]["outcome"] == "failure"
    assert not any("tags" in h["_source"] for h in [*builds.values(), *registry.values(), *sessions.values()])

    # The types the engine actually used are the template's.
    for index, field, kind in (("autobuild-*", "@timestamp", "date"), ("autobuild-*", "asci.component", "keyword"),
                               ("autobuild-*", "build.duration_ms", "long"), ("registry-*", "source.ip", "ip"),
                               ("registry-*", "http.response.status_code", "long"), ("session-*", "source.ip", "ip"),
                               ("session-*", "message", "text"), ("session-*", "log.syslog.priority", "long")):
        assert log_site.field_type(index, field) == kind, (index, field)


def test_long_lines_bad_bytes_and_rejected_documents(tmp_path, docker_client, stack, unique, log_site):
    long_name, odd_name, core_name = unique("long"), unique("odd"), unique("core")
    # 40 KiB + marker: Docker splits it into three journal entries.
    run_container(docker_client, stack, "session", long_name,
                  "head -c 40960 /dev/zero | tr '\\0' a; echo END", user="bob", environment="mx")
    run_container(docker_client, stack, "session", odd_name, "printf 'bad \\377\\376 bytes\\n'")
    # The same field as text, then as an object: the index mapping refuses the second document.
    run_container(docker_client, stack, "asci_core", core_name, printf_lines([
        '{"timestamp":"2026-11-26T05:40:00Z","level":"info","message":"first","detail":"text"}',
        '{"timestamp":"2026-11-26T05:40:01Z","level":"info","message":"second","detail":{"k":1}}',
    ]))
    wait_for_journal({long_name: 3, odd_name: 1, core_name: 2})
    # A route to a pipeline nobody installed: every document of that container is rejected too.
    lost_name = unique("nopipe")
    run_container(docker_client, stack, "proxy", lost_name, "echo 'routed nowhere'")
    wait_for_journal({lost_name: 1})

    config = write_config(tmp_path, log_site.prefix,
                          [[f"CONTAINER_NAME={n}" for n in (long_name, odd_name, core_name, lost_name)]],
                          routes=[{"pipeline": "missing", "container_name": "nopipe"},
                                  {"pipeline": "session", "component": "session"},
                                  {"pipeline": "asci-core", "component": "asci_core"}],
                          missing_pipeline_grace=1.0)
    ship_until_idle(config)
    m = metrics(tmp_path)
    assert m["entries_read"] == 7 and m["events_read"] == 5
    assert m["events_sent"] == 3 and m["events_failed"] == 2 and m["events_lost"] == 0

    sessions = {h["_source"]["container"]["name"]: h["_source"] for h in log_site.documents("session-*")}
    whole = sessions[long_name]
    assert whole["message"] == "a" * 40960 + "END"
    assert whole["asci"]["message"] == {"parts": 3} and whole["tags"] == ["joined_partial"]
    odd = sessions[odd_name]
    assert odd["message"] == "bad \ufffd\ufffd bytes"
    assert odd["asci"]["message"]["invalid_utf8"] is True and "invalid_utf8" in odd["tags"]

    (first,) = [h["_source"] for h in log_site.documents("asci-core-*")]
    assert first["message"] == "first" and first["asci"]["fields"] == {"detail": "text"}
    letters = {h["_source"]["message"]: h["_source"] for h in log_site.documents("deadletter-*")}
    assert set(letters) == {'{"timestamp":"2026-11-26T05:40:01Z","level":"info","message":"second","detail":{"k":1}}',
                            "routed nowhere"}
    conflict = letters['{"timestamp":"2026-11-26T05:40:01Z","level":"info","message":"second","detail":{"k":1}}']
    assert conflict["tags"] == ["dead_letter"] and conflict["event"]["dataset"] == "deadletter"
    assert conflict["error"]["type"] == "mapper_parsing_exception"
    assert "asci.fields.detail" in conflict["error"]["message"]
    assert conflict["deadletter"]["pipeline"] == f"{log_site.prefix}-asci-core"
    assert conflict["deadletter"]["index"].startswith(f"{log_site.prefix}-asci-core-")
    assert conflict["container"]["name"] == core_name and conflict["asci"]["component"] == "asci_core"
    nowhere = letters["routed nowhere"]
    assert f"{log_site.prefix}-missing" in nowhere["error"]["message"] and nowhere["deadletter"]["status"] == 400


def test_shipping_again_sends_nothing_twice(tmp_path, docker_client, stack, unique, log_site):
    entries = 3
    name = unique("again")
    run_container(docker_client, stack, "session", name, printf_lines([f"line {i}" for i in range(entries)]))
    wait_for_journal({name: entries})
    config = write_config(tmp_path, log_site.prefix, [[f"CONTAINER_NAME={name}"]])
    ship_until_idle(config, idle=0.5)
    cursor = (tmp_path / "state" / "logging" / "shipper.cursor").read_text()
    ship_until_idle(config, idle=0.5)  # resumes after the saved cursor: reads nothing
    assert metrics(tmp_path)["events_read"] == 0
    # Even forgetting the cursor re-sends into the same ids: still one document per line.
    (tmp_path / "state" / "logging" / "shipper.cursor").unlink()
    ship_until_idle(config, idle=0.5)
    assert metrics(tmp_path)["events_sent"] == entries
    assert log_site.count() == entries
    assert (tmp_path / "state" / "logging" / "shipper.cursor").read_text() == cursor
