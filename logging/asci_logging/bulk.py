"""One `_bulk` request and what became of each document in it.

Plain `requests` over one keep-alive session, with the NDJSON body built by the
shipper (one `json.dumps` per document, nothing re-serialised here). The
elasticsearch client's `helpers.bulk` would serialise every action again and
bring its own retry policy; we need to decide per item ourselves: 429 and 5xx
items are sent again, other rejected items become dead letters, and only then
may the cursor move.
"""
from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import requests

from asci_core.errors import AsciError
from asci_logging.documents import Doc

# Only what we act on comes back: a 2,000-item answer shrinks from ~400 kB to ~40 kB.
FILTER = "errors,items.*.status,items.*.error"


class BulkTransientError(AsciError):
    """The request as a whole failed (engine away, overloaded, refusing): try again later."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class TooLarge(BulkTransientError):
    """HTTP 413: the body exceeds the engine's http.max_content_length; send smaller requests."""


@dataclass
class Rejection:
    doc: Doc
    status: int
    error: dict[str, Any]


@dataclass
class BulkOutcome:
    indexed: int = 0
    retry: list[Doc] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


class BulkClient:
    def __init__(self, url: str, session: requests.Session, timeout: float, compress: bool = False):
        self._endpoint = f"{url.rstrip('/')}/_bulk"
        self._session = session
        self._timeout = timeout
        self._compress = compress

    def send(self, docs: Sequence[Doc]) -> BulkOutcome:
        body = b"".join(part for d in docs for part in (d.action, d.source))
        headers = {"Content-Type": "application/x-ndjson"}
        if self._compress:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        try:
            resp = self._session.post(self._endpoint, data=body, headers=headers,
                                      params={"filter_path": FILTER}, timeout=self._timeout)
        except requests.RequestException as exc:
            raise BulkTransientError(f"no answer from {self._endpoint} ({type(exc).__name__}: {exc})") from None
        if resp.status_code == 413:
            raise TooLarge(f"request of {len(body)} bytes too large", 413)
        if resp.status_code != 200:
            # 429/5xx are the engine's to recover from; 4xx here (auth, a proxy in the way) the
            # operator's. Both are retried: dropping the batch would lose lines.
            raise BulkTransientError(f"HTTP {resp.status_code} from _bulk: {resp.text[:300]}", resp.status_code)
        try:
            answer = resp.json()
        except ValueError:
            raise BulkTransientError(f"_bulk answered with something that is not JSON: {resp.text[:200]!r}") from None
        return classify(docs, answer)


def classify(docs: Sequence[Doc], answer: dict[str, Any]) -> BulkOutcome:
    """Split a `_bulk` answer into indexed, to-retry and rejected documents (items come back in order)."""
    if not answer.get("errors"):
        return BulkOutcome(indexed=len(docs))
    items = answer.get("items") or []
    if len(items) != len(docs):
        raise BulkTransientError(f"_bulk answered {len(items)} items for {len(docs)} documents")
    outcome = BulkOutcome()
    for doc, item in zip(docs, items):
        result = next(iter(item.values()))
        status = int(result.get("status", 500))
        if status < 300:
            outcome.indexed += 1
        elif status == 429 or status >= 500:
            outcome.retry.append(doc)
        else:
            outcome.rejected.append(Rejection(doc, status, result.get("error") or {}))
    return outcome


def describe_error(error: dict[str, Any]) -> str:
    """The engine's reason with its causes, one line: what a person needs to fix the line or the mapping."""
    parts = []
    seen = error
    while isinstance(seen, dict) and seen:
        reason = seen.get("reason") or ""
        parts.append(f"{seen.get('type', 'error')}: {reason}".strip())
        seen = seen.get("caused_by")
    return " <- ".join(parts) or json.dumps(error)
