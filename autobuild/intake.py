"""From a webhook request to durable builds: decide, record, answer.

The order of checks matters: size and signature header first (cheap, no
parsing for strangers), then the payload, the repository, its secret, its host,
and only then the refs. Nothing is acknowledged (2xx) before it is on disk.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from asci_core.jsonlog import get_logger
from autobuild.payloads import PING, PayloadError, RefChange, foreign_link, parse_push, verify_signature
from autobuild.pipeline import image_repository
from autobuild.settings import AutobuildSettings, RepositorySettings
from autobuild.store import NewBuild, Store, record_delivery
from autobuild.tags import TagRefused, check_tag

log = get_logger("autobuild")


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    new_builds: list[int] = field(default_factory=list)


def _refuse(status: int, reason: str, **extra: Any) -> Answer:
    return Answer(status, {"status": "refused", "reason": reason, **extra})


class Intake:
    def __init__(self, settings: AutobuildSettings, store: Store):
        self.settings = settings
        self.store = store
        self.repositories = {r.name.lower(): r for r in settings.repositories}
        self.hosts = {h.name: h for h in settings.hosts}

    async def receive(self, headers: Mapping[str, str], body: bytes) -> Answer:
        event = headers.get("X-Event-Key", "")
        signature = headers.get("X-Hub-Signature")
        if not event:
            return _refuse(400, "missing X-Event-Key header")
        if not signature:
            return _refuse(401, "missing X-Hub-Signature header (configure a secret on the webhook)")
        if event == PING:
            # A ping names no repository: accept it if it was signed with any configured secret.
            if any(verify_signature(body, signature, r.webhook_secret.reveal()) for r in self.repositories.values()):
                return Answer(200, {"status": "pong"})
            return _refuse(401, "signature does not match")
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _refuse(400, f"body is not valid JSON ({exc})")
        try:
            push = parse_push(event, payload)
        except PayloadError as exc:
            return _refuse(400, str(exc))
        repo = self.repositories.get(push.repository.lower())
        if repo is None:
            return _refuse(403, f"repository {push.repository} is not configured for autobuild")
        if not verify_signature(body, signature, repo.webhook_secret.reveal()):
            return _refuse(401, "signature does not match")
        host = self.hosts[repo.host]
        expected_event = "repo:refs_changed" if host.kind == "server" else "repo:push"
        if event != expected_event:
            return _refuse(403, f"{repo.name} lives on a Bitbucket {host.kind} host, which does not send {event}")
        foreign = foreign_link(push, host.url)
        if foreign is not None:
            return _refuse(403, f"payload points at {foreign}, which is not on {host.url}")

        delivery_id = (headers.get("X-Request-Id") or headers.get("X-Request-UUID")
                       or "sha256:" + hashlib.sha256(body).hexdigest())
        outcomes, builds = self._decide(repo, push.changes, delivery_id)
        queued = [o for o in outcomes if o["result"] == "queued"]
        refused = [o for o in outcomes if o["result"] == "refused"]
        outcome = "queued" if queued else "refused" if refused else "ignored"
        stored = await asyncio.wrap_future(self.store.submit(
            record_delivery(delivery_id, event, repo.name, outcome, outcomes, builds)))
        log.info("delivery", delivery=delivery_id, repository=repo.name, outcome=outcome,
                 duplicate=stored["duplicate"], changes=len(outcomes))
        body_out = {"status": stored["outcome"], "delivery": delivery_id, "changes": stored["detail"]}
        if stored["duplicate"]:
            return Answer(200, {**body_out, "duplicate": True})
        new = [o["build_id"] for o in stored["detail"] if o.get("new")]
        return Answer(422 if outcome == "refused" else 202, body_out, new)

    def _decide(self, repo: RepositorySettings, changes: tuple[RefChange, ...],
                delivery_id: str) -> tuple[list[dict[str, Any]], list[NewBuild]]:
        outcomes: list[dict[str, Any]] = []
        builds: list[NewBuild] = []
        for change in changes:
            # The name is echoed back only as JSON (escaped); it goes nowhere else unchecked.
            entry: dict[str, Any] = {"ref": change.name[:200], "kind": change.kind}
            if change.kind != "tag":
                entry.update(result="ignored", reason="branch push: only tags are built")
            elif change.action == "delete" or change.commit is None:
                entry.update(result="ignored", reason="tag deleted: nothing to build")
            else:
                try:
                    tag = check_tag(change.name, repo.tag_pattern)
                except TagRefused as exc:
                    entry.update(result="refused", reason=str(exc))
                else:
                    key = f"tag:{repo.name.lower()}:{tag}:{change.commit}"
                    if not any(b.dedupe_key == key for b in builds):
                        builds.append(NewBuild(key, repo.name, image_repository(repo), tag, change.commit,
                                               "webhook", delivery_id=delivery_id))
                    entry.update(result="queued", tag=tag, commit=change.commit, dedupe_key=key)
            outcomes.append(entry)
        return outcomes, builds
