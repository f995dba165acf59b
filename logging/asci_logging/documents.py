"""From a journal event to a search-engine document and its `_bulk` action line.

The document id is derived from the journal entry's sequence identity (the `s`
and `i` parts of its cursor: a random id of the journal's sequence and the
entry's number in it), so sending an entry twice overwrites rather than
duplicates. The index is <prefix>-<dataset>-<UTC day of the journal time stamp>:
also a function of the entry alone, so a re-send lands in the same index.
"""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import time
from dataclasses import dataclass
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

from asci_logging.container_logging import COMPONENT_FIELD, ENVIRONMENT_FIELD, USER_FIELD
from asci_logging.partials import Event
from asci_logging.routing import Router

LEVELS = {b"0": "emergency", b"1": "alert", b"2": "critical", b"3": "error",
          b"4": "warning", b"5": "notice", b"6": "info", b"7": "debug"}
TAG_TRUNCATED = "truncated"
TAG_INVALID_UTF8 = "invalid_utf8"
TAG_JOINED = "joined_partial"
TAG_INCOMPLETE = "partial_incomplete"


_SEQUENCE_PREFIXES: dict[str, str] = {}


def document_id(cursor: str) -> str:
    """The entry's sequence identity (`s=...;i=...` of its cursor) in at most 28 URL-safe characters.

    `s` (a random 128-bit id of the journal's sequence) is hashed once into a 12-character
    prefix; the entry's sequence number follows in hex. Ids of one journal then share a
    prefix and grow monotonically, which Lucene looks up faster than random ids.
    """
    if cursor.startswith("s=") and cursor[34:37] == ";i=":
        seq_id, seq_num = cursor[2:34], cursor[37:cursor.index(";", 37)]
    else:
        seq_id, seq_num = (part.split("=", 1)[1] for part in cursor.split(";", 2)[:2])
    prefix = _SEQUENCE_PREFIXES.get(seq_id)
    if prefix is None:
        digest = hashlib.blake2b(seq_id.encode(), digest_size=9).digest()
        prefix = _SEQUENCE_PREFIXES.setdefault(seq_id, base64.urlsafe_b64encode(digest).decode())
    return prefix + seq_num


def dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(slots=True)
class Doc:
    """One line of a `_bulk` request, ready to send, plus what a dead letter needs."""

    id: str
    index: str
    pipeline: str
    action: bytes
    source: bytes
    realtime_us: int

    def loads(self) -> dict[str, Any]:
        return json.loads(self.source)


class _Clock:
    """UTC text for journal microsecond stamps; the seconds part is cached, as stamps come in runs."""

    __slots__ = ("_second", "_prefix", "_day_second", "_day")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""
        self._day_second = -1
        self._day = ""

    def iso(self, us: int) -> str:
        second, micro = divmod(us, 1_000_000)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{micro:06d}Z"

    def day(self, us: int) -> str:
        second = us // 1_000_000
        if not (self._day_second <= second < self._day_second + 86400):
            self._day_second = second - second % 86400
            self._day = time.strftime("%Y.%m.%d", time.gmtime(second))
        return self._day


@dataclass(frozen=True, slots=True)
class _Source:
    """What every document of one source shares: same container or unit, priority and pid."""

    dataset: str
    pipeline: str
    fields: dict[str, Any]  # the document without @timestamp and message
    tail: bytes  # `fields` as JSON, to follow the message: `,"log":{...},...}` and the newline


_SOURCE_CACHE_LIMIT = 4096


class DocumentBuilder:
    """Journal events to documents. Per event only the time, the message and the id are new;
    the rest is serialised once per source and spliced in, which keeps the cost per event low."""

    def __init__(self, prefix: str, router: Router, max_message_bytes: int):
        self.prefix = prefix
        self.router = router
        self.max_message_bytes = max_message_bytes
        self._clock = _Clock()
        self._hostname = socket.gethostname()
        self._sources: dict[tuple[bytes | None, ...], _Source] = {}
        self._actions: dict[tuple[str, str], tuple[str, str]] = {}

    def index_for(self, dataset: str, realtime_us: int) -> str:
        """Index of a document; safe from any thread (the reading thread's cache is not used)."""
        return f"{self.prefix}-{dataset}-{time.strftime('%Y.%m.%d', time.gmtime(realtime_us // 1_000_000))}"

    def build(self, event: Event) -> Doc:
        get = event.fields.get
        key = (get("PRIORITY"), get("_PID"), get(COMPONENT_FIELD), get("CONTAINER_NAME"), get("SYSLOG_IDENTIFIER"),
               get("CONTAINER_ID_FULL") or get("CONTAINER_ID"), get("IMAGE_NAME"), get(USER_FIELD),
               get(ENVIRONMENT_FIELD), get("_HOSTNAME"), get("_SYSTEMD_UNIT"))
        source = self._sources.get(key)
        if source is None:
            source = self._source(key)

        raw = event.message
        text, flags, tags = self._text(raw, event)
        timestamp = self._clock.iso(event.realtime_us)
        if flags:
            doc = {"@timestamp": timestamp, "message": text, **source.fields}
            doc["asci"] = {**source.fields.get("asci", {}), "message": flags}
            doc["tags"] = tags
            body = dumps(doc) + b"\n"
        else:
            body = b"".join((b'{"@timestamp":"', timestamp.encode(), b'","message":',
                             encode_basestring(text).encode(), source.tail))

        doc_id = document_id(event.cursor)
        day = self._clock.day(event.realtime_us)
        head, tail = self._action(source, day)
        # Index, id and pipeline names come from a safe alphabet: no JSON escaping needed.
        return Doc(doc_id, f"{self.prefix}-{source.dataset}-{day}", source.pipeline,
                   f"{head}{doc_id}{tail}".encode(), body, event.realtime_us)

    def _text(self, raw: bytes, event: Event) -> tuple[str, dict[str, Any], list[str]]:
        tags: list[str] = []
        flags: dict[str, Any] = {}
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            # Kept, not dropped: undecodable bytes become U+FFFD and the document says so.
            text = raw.decode("utf-8", "replace")
            tags.append(TAG_INVALID_UTF8)
            flags["invalid_utf8"] = True
        if len(raw) > self.max_message_bytes or event.original_bytes:
            text = text.encode("utf-8")[:self.max_message_bytes].decode("utf-8", "ignore")
            tags.append(TAG_TRUNCATED)
            flags["truncated"] = True
            flags["original_bytes"] = event.original_bytes or len(raw)
        if event.parts > 1:
            tags.append(TAG_JOINED)
            flags["parts"] = event.parts
        if event.incomplete:
            tags.append(TAG_INCOMPLETE)
            flags["incomplete"] = True
        return text, flags, tags

    def _action(self, source: _Source, day: str) -> tuple[str, str]:
        found = self._actions.get((source.pipeline, day + source.dataset))
        if found is None:
            index = f"{self.prefix}-{source.dataset}-{day}"
            found = (f'{{"index":{{"_index":"{index}","_id":"', f'","pipeline":"{source.pipeline}"}}}}\n')
            if len(self._actions) >= _SOURCE_CACHE_LIMIT:
                self._actions.clear()
            self._actions[(source.pipeline, day + source.dataset)] = found
        return found

    def _source(self, key: tuple[bytes | None, ...]) -> _Source:
        priority, pid, component, container_name, identifier, cid, image, user, environment, host, unit = key
        route = self.router.route(component, container_name, identifier)

        def text(value: bytes) -> str:
            return value.decode("utf-8", "replace")

        log: dict[str, Any] = {"level": LEVELS.get(priority, "info") if priority is not None else "info"}
        syslog: dict[str, Any] = {}
        if priority is not None and priority in LEVELS:
            syslog["priority"] = int(priority)
        if identifier is not None:
            syslog["appname"] = text(identifier)
        if syslog:
            log["syslog"] = syslog
        fields: dict[str, Any] = {
            "log": log,
            "event": {"dataset": route.dataset},
            "host": {"name": text(host) if host else self._hostname},
        }
        if container_name is not None:
            container: dict[str, Any] = {"name": text(container_name)}
            if cid:
                container["id"] = text(cid)
            if image:
                container["image"] = {"name": text(image)}
            fields["container"] = container
        asci = {name: text(value) for name, value in
                (("component", component), ("user", user), ("environment", environment)) if value is not None}
        if asci:
            fields["asci"] = asci
        if pid is not None and pid.isdigit():
            fields["process"] = {"pid": int(pid)}
        if unit is not None:
            fields["systemd"] = {"unit": text(unit)}
        source = _Source(route.dataset, route.pipeline, fields, b"," + dumps(fields)[1:] + b"\n")
        if len(self._sources) >= _SOURCE_CACHE_LIMIT:
            self._sources.clear()
        self._sources[key] = source
        return source
