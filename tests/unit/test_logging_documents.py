"""From journal entries to `_bulk` lines: ids, fields, flags, split lines and routing."""
from __future__ import annotations

import json

from asci_core.config import parse_config
from asci_logging.documents import DocumentBuilder, document_id
from asci_logging.journal_source import JournalEntry
from asci_logging.partials import Event, PartialJoiner
from asci_logging.routing import Router

CURSOR = "s=38dadb4da231409c9b7f6526b470009b;i=a;b=b423c236b8444a1eaa800f566e4607b9;m=77ad48e8;t=661276d04711a;x=90"
REALTIME = 1795671820890394  # 2026-11-26T05:43:40.890394Z


def builder(max_bytes: int = 1024) -> DocumentBuilder:
    s = parse_config("").logging.shipper
    return DocumentBuilder("asci-logs", Router("asci-logs", s.routes, s.default_pipeline), max_bytes)


def container_fields(message: bytes, **extra: bytes) -> dict[str, bytes]:
    fields = {"MESSAGE": message, "PRIORITY": b"3", "_HOSTNAME": b"node1", "_PID": b"77",
              "CONTAINER_NAME": b"asci-session-alice", "CONTAINER_ID": b"f217c922398c",
              "CONTAINER_ID_FULL": b"f217c922398c" + b"a" * 52, "IMAGE_NAME": b"bl/desktop:1.0",
              "SYSLOG_IDENTIFIER": b"asci/session/asci-session-alice",
              "ASCI_COMPONENT": b"session", "ASCI_USER": b"alice", "ASCI_ENVIRONMENT": b"mx"}
    fields.update(extra)
    return fields


def build(fields: dict[str, bytes], max_bytes: int = 1024, **event_extra) -> tuple[dict, dict]:
    doc = builder(max_bytes).build(Event(fields, fields.get("MESSAGE", b""), CURSOR, REALTIME, **event_extra))
    return json.loads(doc.action), json.loads(doc.source)


def test_container_line_becomes_a_routed_document():
    action, source = build(container_fields(b"Xvnc started"))
    assert action == {"index": {"_index": "asci-logs-session-2026.11.26", "_id": document_id(CURSOR),
                                "pipeline": "asci-logs-session"}}
    assert source == {
        "@timestamp": "2026-11-26T05:43:40.890394Z",
        "message": "Xvnc started",
        "log": {"level": "error", "syslog": {"priority": 3, "appname": "asci/session/asci-session-alice"}},
        "event": {"dataset": "session"},
        "host": {"name": "node1"},
        "container": {"name": "asci-session-alice", "id": "f217c922398c" + "a" * 52,
                      "image": {"name": "bl/desktop:1.0"}},
        "asci": {"component": "session", "user": "alice", "environment": "mx"},
        "process": {"pid": 77},
    }


def test_id_depends_only_on_the_entry_sequence_identity():
    same_entry_other_cursor_text = CURSOR.replace("x=90", "x=91").replace("m=77ad48e8", "m=1")
    assert document_id(CURSOR) == document_id(same_entry_other_cursor_text)
    assert document_id(CURSOR) != document_id(CURSOR.replace("i=a;", "i=b;"))
    assert document_id(CURSOR).endswith("a") and len(document_id(CURSOR)) == 13


def test_unit_line_without_container_goes_to_its_identifier_route():
    action, source = build({"MESSAGE": b"registry up", "SYSLOG_IDENTIFIER": b"docker-registry",
                            "_SYSTEMD_UNIT": b"docker-registry.service", "PRIORITY": b"6"})
    assert action["index"]["pipeline"] == "asci-logs-registry"
    assert source["systemd"] == {"unit": "docker-registry.service"}
    assert "container" not in source and "asci" not in source


def test_non_utf8_is_kept_with_replacement_characters_and_a_flag():
    _, source = build(container_fields(b"bad \xff\xfe bytes"))
    assert source["message"] == "bad \ufffd\ufffd bytes"
    assert source["asci"]["message"] == {"invalid_utf8": True}
    assert source["tags"] == ["invalid_utf8"]


def test_long_message_is_cut_on_a_character_boundary_with_its_length():
    text = ("é" * 600).encode()  # 1200 bytes, 2 per character
    _, source = build(container_fields(text), max_bytes=1001)
    assert source["message"] == "é" * 500
    assert source["asci"]["message"] == {"truncated": True, "original_bytes": 1200}
    assert "invalid_utf8" not in source.get("tags", [])


def test_joiner_keeps_split_lines_apart_per_container_and_joins_them():
    joiner = PartialJoiner(max_bytes=1 << 20, timeout_s=10)
    def entry(n: int, cid: bytes, msg: bytes, partial: bool, pid: bytes | None = None) -> JournalEntry:
        f = {"MESSAGE": msg, "CONTAINER_ID_FULL": cid, "PRIORITY": b"6"}
        if partial:
            f["CONTAINER_PARTIAL_MESSAGE"] = b"true"
        if pid:
            f["CONTAINER_PARTIAL_ID"] = pid
        return JournalEntry(f, f"c{n}", REALTIME + n)
    out: list[Event] = []
    out += joiner.feed(entry(1, b"A", b"a1-", True, b"pa"), "c0")
    out += joiner.feed(entry(2, b"B", b"whole", False), "c1")
    out += joiner.feed(entry(3, b"C", b"c1-", True), "c2")  # an engine without partial ids
    assert joiner.safe_cursor("c3") == "c0"  # not past the first piece of the oldest open line
    out += joiner.feed(entry(4, b"A", b"a2", False, b"pa"), "c3")
    assert joiner.safe_cursor("c4") == "c2"
    out += joiner.feed(entry(5, b"C", b"c2", False), "c4")
    assert joiner.safe_cursor("c5") == "c5"
    assert [(e.message, e.cursor, e.parts) for e in out] == [
        (b"whole", "c2", 1), (b"a1-a2", "c1", 2), (b"c1-c2", "c3", 2)]


def test_joined_line_over_the_cap_keeps_its_original_length():
    joiner = PartialJoiner(max_bytes=10, timeout_s=10)
    pieces = [b"x" * 8, b"y" * 8, b"z" * 8]
    events = []
    for i, piece in enumerate(pieces):
        f = {"MESSAGE": piece, "CONTAINER_ID_FULL": b"A", "CONTAINER_PARTIAL_ID": b"p"}
        if i < 2:
            f["CONTAINER_PARTIAL_MESSAGE"] = b"true"
        events += joiner.feed(JournalEntry(f, f"c{i}", REALTIME), None)
    (event,) = events
    assert event.parts == 3 and event.original_bytes == 24
    _, source = build({**event.fields, "MESSAGE": event.message}, max_bytes=10,
                      parts=event.parts, original_bytes=event.original_bytes)
    assert source["message"] == "xxxxxxxxyy"
    assert source["asci"]["message"] == {"truncated": True, "original_bytes": 24, "parts": 3}
    assert source["tags"] == ["truncated", "joined_partial"]


def test_overdue_split_line_is_shipped_incomplete():
    joiner = PartialJoiner(max_bytes=100, timeout_s=2)
    f = {"MESSAGE": b"half", "CONTAINER_ID_FULL": b"A", "CONTAINER_PARTIAL_MESSAGE": b"true"}
    assert joiner.feed(JournalEntry(f, "c1", REALTIME), "c0") == []
    assert joiner.flush_stale(REALTIME + 1_000_000) == []
    (event,) = joiner.flush_stale(REALTIME + 3_000_000)
    assert event.incomplete and event.message == b"half" and joiner.open_chains == 0


def test_router_caches_by_the_three_fields():
    s = parse_config("").logging.shipper
    router = Router("asci-logs", s.routes, s.default_pipeline)
    first = router.route(b"proxy", b"x", b"asci/proxy/x")
    assert first.pipeline == "asci-logs-access" and first.dataset == "access"
    assert router.route(b"proxy", b"x", b"asci/proxy/x") is first
    assert router.route(b"alerts", None, None).dataset == "alerts"
    assert router.route(None, None, b"asci").pipeline == "asci-logs-asci-core"
    assert router.route(b"unknown", None, None).pipeline == "asci-logs-default"
