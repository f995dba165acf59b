"""Documents the engine rejected (a mapping conflict, a missing pipeline...) are kept, not dropped.

A dead letter goes to <prefix>-deadletter-<day> without any pipeline: the raw
message, the engine's error, where the document was meant to go, and the whole
original document as an unindexed string, so it can be replayed once the cause
is fixed. It carries only fields the index template maps, so it cannot itself
hit the conflict that sank the original.
"""
from __future__ import annotations

import json
import time
from typing import Any

from asci_logging.bulk import Rejection, describe_error
from asci_logging.documents import Doc, dumps

DATASET = "deadletter"
TAG = "dead_letter"
# Fields copied from the original when present: all are keywords in the template.
_KEEP = ("@timestamp", "host", "container", "process", "systemd", "log")


def dead_letter(rejection: Rejection, index: str) -> Doc:
    original = rejection.doc
    try:
        source: dict[str, Any] = original.loads()
    except ValueError:
        source = {}
    letter: dict[str, Any] = {k: source[k] for k in _KEEP if k in source}
    asci = source.get("asci") or {}
    letter["asci"] = {k: asci[k] for k in ("component", "user", "environment") if k in asci}
    letter["message"] = source.get("message", "")
    letter["event"] = {"dataset": DATASET}
    letter["tags"] = [TAG]
    letter["error"] = {
        "type": str(rejection.error.get("type", "unknown")),
        "message": describe_error(rejection.error),
    }
    letter["deadletter"] = {
        "index": original.index,
        "pipeline": original.pipeline,
        "status": rejection.status,
        "dataset": (source.get("event") or {}).get("dataset"),
        "document": original.source.decode("utf-8", "replace").rstrip("\n"),
    }
    # Same id in another index: a re-sent dead letter overwrites itself too.
    action = json.dumps({"index": {"_index": index, "_id": original.id, "pipeline": "_none"}}).encode() + b"\n"
    return Doc(original.id, index, "_none", action, dumps(letter) + b"\n", original.realtime_us)


def last_resort(rejection: Rejection, index: str) -> Doc:
    """If even the dead letter is refused: the raw message, the time and the error, nothing else to conflict."""
    try:
        message = rejection.doc.loads().get("message", "")
    except ValueError:
        message = rejection.doc.source.decode("utf-8", "replace")
    seconds = rejection.doc.realtime_us / 1_000_000
    letter = {
        "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds)),
        "message": message if isinstance(message, str) else json.dumps(message),
        "event": {"dataset": DATASET},
        "tags": [TAG],
        "error": {"type": str(rejection.error.get("type", "unknown")), "message": describe_error(rejection.error)},
    }
    action = json.dumps({"index": {"_index": index, "_id": rejection.doc.id, "pipeline": "_none"}}).encode() + b"\n"
    return Doc(rejection.doc.id, index, "_none", action, dumps(letter) + b"\n", rejection.doc.realtime_us)
