"""From a webhook request to durable builds: decide, record, answer.

The order of checks matters: size and signature first, so no byte of a body is
parsed before a configured secret has signed it. On the per-repository URL the
secret is that repository's; on the shared URL every configured secret is tried
against the raw body (an HMAC is cheap) and the payload must then name one of the
repositories whose secret matched. An unknown repository gets exactly the answer
of a bad signature, so the receiver cannot be used to learn which repositories
exist. Then the host, and only then the refs. Nothing is acknowledged (2xx)
before it is on disk.
"""
from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from asci_core.jsonlog import get_logger
from autobuild.payloads import (PING, PayloadError, RefChange, foreign_link, load_body, parse_push,
                                verify_signature)
from autobuild.pipeline import image_repository
from autobuild.settings import AutobuildSettings, RepositorySettings
from autobuild.store import NewBuild, Release, Store, record_delivery
from autobuild.tags import TagRefused, check_tag

log = get_logger("autobuild")


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    new_builds: list[int] = field(default_factory=list)


def _refuse(status: int, reason: str, **extra: Any) -> Answer:
    return Answer(status, {"status": "refused", "reason": reason, **extra})


def _unsigned() -> Answer:
    # The one answer for a bad signature, an unknown repository and a payload naming a repository
    # its signer has no secret for: nothing in it tells them apart.
    return _refuse(401, "signature does not match")


# Called once per refused moved tag of a new delivery: (repository, outcome entry).
TagMovedHook = Callable[[str, dict[str, Any]], None]


class Intake:
    def __init__(self, settings: AutobuildSettings, store: Store, *, on_tag_moved: TagMovedHook | None = None):
        self.settings = settings
        self.store = store
        self.repositories = {r.name.lower(): r for r in settings.repositories}
        self.hosts = {h.name: h for h in settings.hosts}
        self.on_tag_moved = on_tag_moved
        # An unknown repository's URL still costs one HMAC, so timing does not tell it apart either.
        self._decoy_secret = secrets.token_hex(32)

    def signers(self, body: bytes, signature: str, repository: str | None) -> dict[str, RepositorySettings]:
        """The configured repositories whose secret signed BODY: only REPOSITORY's when the URL names it."""
        if repository is not None:
            repo = self.repositories.get(repository.lower())
            secret = repo.webhook_secret.reveal() if repo else self._decoy_secret
            ok = verify_signature(body, signature, secret)
            return {repo.name.lower(): repo} if ok and repo else {}
        return {key: repo for key, repo in self.repositories.items()
                if verify_signature(body, signature, repo.webhook_secret.reveal())}

    async def receive(self, headers: Mapping[str, str], body: bytes, repository: str | None = None) -> Answer:
        """REPOSITORY is the PROJECT/slug of a per-repository hook URL, None for the shared URL."""
        event = headers.get("X-Event-Key", "")
        signature = headers.get("X-Hub-Signature")
        if not event:
            return _refuse(400, "missing X-Event-Key header")
        if not signature:
            return _refuse(401, "missing X-Hub-Signature header (configure a secret on the webhook)")
        # HMACs over up to max_body_bytes, once per repository: off the event loop.
        signers = await asyncio.to_thread(self.signers, body, signature, repository)
        if not signers:
            return _unsigned()
        if event == PING:
            return Answer(200, {"status": "pong"})
        try:
            push = parse_push(event, load_body(body))
        except PayloadError as exc:
            return _refuse(400, str(exc))
        repo = signers.get(push.repository.lower())
        if repo is None:
            return _unsigned()
        host = self.hosts[repo.host]
        expected_event = "repo:refs_changed" if host.kind == "server" else "repo:push"
        if event != expected_event:
            return _refuse(403, f"{repo.name} lives on a Bitbucket {host.kind} host, which does not send {event}")
        foreign = foreign_link(push, host.url)
        if foreign is not None:
            return _refuse(403, f"payload points at {foreign}, which is not on {host.url}")

        delivery_id = (headers.get("X-Request-Id") or headers.get("X-Request-UUID")
                       or "sha256:" + hashlib.sha256(body).hexdigest())
        tags = sorted({c.name for c in push.changes if c.kind == "tag" and c.commit})
        released = (await asyncio.to_thread(self.store.releases, repo.name, tags)
                    if repo.immutable_tags and tags else {})
        outcomes, builds = self._decide(repo, push.changes, delivery_id, released)
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
        if self.on_tag_moved is not None:
            for entry in stored["detail"]:
                if "released_commit" in entry:
                    self.on_tag_moved(repo.name, entry)
        new = [o["build_id"] for o in stored["detail"] if o.get("new")]
        return Answer(422 if outcome == "refused" else 202, body_out, new)

    def _decide(self, repo: RepositorySettings, changes: tuple[RefChange, ...], delivery_id: str,
                released: Mapping[str, list[Release]] | None = None) -> tuple[list[dict[str, Any]], list[NewBuild]]:
        """What each ref change becomes; RELEASED holds the succeeded builds of the tags named (immutable repos)."""
        released = released or {}
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
                    outcomes.append(entry)
                    continue
                moved_from = _moved_from(released.get(tag, ()), change.commit) if repo.immutable_tags else None
                if moved_from is not None:
                    entry.update(result="refused", tag=tag, commit=change.commit,
                                 released_commit=moved_from.commit, released_build=moved_from.build_id,
                                 reason=f"tag {tag} was released from commit {moved_from.commit} "
                                        f"(build {moved_from.build_id}); releases are immutable, so the moved tag "
                                        "is not built: release a new version instead")
                else:
                    key = f"tag:{repo.name.lower()}:{tag}:{change.commit}"
                    if not any(b.dedupe_key == key for b in builds):
                        builds.append(NewBuild(key, repo.name, image_repository(repo), tag, change.commit,
                                               "webhook", delivery_id=delivery_id))
                    entry.update(result="queued", tag=tag, commit=change.commit, dedupe_key=key)
            outcomes.append(entry)
        return outcomes, builds


def _moved_from(releases: "list[Release] | tuple[()]", delivered: str) -> Release | None:
    """The release a delivered hash contradicts, if any (it may name the commit or the annotated tag object)."""
    if not releases or any(delivered in (r.commit, r.tag_object) for r in releases):
        return None
    return releases[0]
