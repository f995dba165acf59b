"""Bitbucket webhook payloads, Server/Data Center and Cloud, reduced to what autobuild needs.

Only facts are taken from a payload (which repository, which refs moved to which
commit); where to clone from always comes from configuration.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from asci_core.errors import UsageError

SERVER_PUSH = "repo:refs_changed"
CLOUD_PUSH = "repo:push"
PING = "diagnostics:ping"
ZERO_HASH = re.compile(r"0{40}")
COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class PayloadError(UsageError, ValueError):
    """The payload lacks something autobuild needs; the message says what."""


@dataclass(frozen=True)
class RefChange:
    kind: str  # "tag" or "branch"
    name: str
    action: str  # "add", "update" or "delete"
    commit: str | None


@dataclass(frozen=True)
class Push:
    repository: str  # PROJECT/slug or workspace/slug
    links: tuple[str, ...]  # web/clone addresses named by the payload, only used to check the host
    changes: tuple[RefChange, ...]


def verify_signature(body: bytes, header: str | None, secret: str) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256="):].strip().lower())


def load_body(body: bytes) -> Any:
    """The JSON of a body whose signature has already been checked; any way it can fail is a PayloadError."""
    try:
        return json.loads(body)
    except RecursionError:
        # The C decoder recurses once per nesting level: 10,000 '[' end here, not in a traceback.
        raise PayloadError("body is not valid JSON (nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError(f"body is not valid JSON ({exc})") from None


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            raise PayloadError(f"payload has no {'.'.join(path)}")
        data = data[key]
    return data


def _text(data: Any, *path: str) -> str:
    value = _get(data, *path)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"payload field {'.'.join(path)} must be a non-empty string")
    return value


def _commit(value: Any, where: str) -> str | None:
    if value is None or (isinstance(value, str) and ZERO_HASH.fullmatch(value)):
        return None
    if not isinstance(value, str) or not COMMIT.fullmatch(value):
        raise PayloadError(f"{where} is not a commit hash")
    return value


def parse_push(event: str, payload: Any) -> Push:
    if not isinstance(payload, dict):
        raise PayloadError("payload must be a JSON object")
    if event == SERVER_PUSH:
        return _parse_server(payload)
    if event == CLOUD_PUSH:
        return _parse_cloud(payload)
    raise PayloadError(f"unsupported event {event!r} (expected {SERVER_PUSH}, {CLOUD_PUSH} or {PING})")


def _parse_server(payload: dict) -> Push:
    project = _text(payload, "repository", "project", "key")
    slug = _text(payload, "repository", "slug")
    links = []
    for group in ("clone", "self"):
        for link in (payload["repository"].get("links") or {}).get(group) or []:
            if isinstance(link, dict) and isinstance(link.get("href"), str):
                links.append(link["href"])
    changes_raw = _get(payload, "changes")
    if not isinstance(changes_raw, list):
        raise PayloadError("payload field changes must be a list")
    changes = []
    for i, raw in enumerate(changes_raw):
        ref_type = _text(raw, "ref", "type")
        name = _text(raw, "ref", "displayId")
        action = _text(raw, "type").lower()
        if action not in ("add", "update", "delete"):
            raise PayloadError(f"changes[{i}].type {raw['type']!r} is not ADD, UPDATE or DELETE")
        commit = _commit(raw.get("toHash"), f"changes[{i}].toHash")
        changes.append(RefChange("tag" if ref_type == "TAG" else "branch", name, action, commit))
    return Push(f"{project}/{slug}", tuple(links), tuple(changes))


def _parse_cloud(payload: dict) -> Push:
    full_name = _text(payload, "repository", "full_name")
    links = []
    html = ((payload["repository"].get("links") or {}).get("html") or {}).get("href")
    if isinstance(html, str):
        links.append(html)
    changes_raw = _get(payload, "push", "changes")
    if not isinstance(changes_raw, list):
        raise PayloadError("payload field push.changes must be a list")
    changes = []
    for i, raw in enumerate(changes_raw):
        if not isinstance(raw, dict):
            raise PayloadError(f"push.changes[{i}] must be an object")
        new, old = raw.get("new"), raw.get("old")
        side = new if isinstance(new, dict) else old
        if not isinstance(side, dict):
            raise PayloadError(f"push.changes[{i}] has neither new nor old")
        kind = _text(side, "type")
        name = _text(side, "name")
        if new is None or raw.get("closed"):
            action, commit = "delete", None
        else:
            action = "add" if raw.get("created") or old is None else "update"
            commit = _commit(_get(new, "target", "hash"), f"push.changes[{i}].new.target.hash")
        changes.append(RefChange("tag" if kind in ("tag", "annotated_tag") else "branch", name, action, commit))
    return Push(full_name, tuple(links), tuple(changes))


def foreign_link(push: Push, host_url: str) -> str | None:
    """The first address in the payload that is not on the configured host, if any."""
    expected = urlparse(host_url).hostname
    for link in push.links:
        parsed = urlparse(link if "://" in link else f"ssh://{link}")
        if parsed.hostname != expected:
            return link
    return None
