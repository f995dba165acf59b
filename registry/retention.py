"""Retention: decide which tags go, with a reason for each one that stays, then delete.

Planning is a pure function of (tags with digests and ages, policy, deployed set,
now), so `retain --dry-run` and `retain` compute the same plan from the same
state. The registry deletes by digest and a digest takes all its tags with it,
so a digest is deleted only when none of its tags is kept.
"""
from __future__ import annotations

import datetime as _dt
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from asci_core.jsonlog import get_logger
from registry.client import INDEX_TYPES, Manifest, RegistryClient
from registry.deployed import DeployedSet
from registry.errors import NotFound
from registry.semver import parse_version
from registry.settings import RegistryComponentSettings, RetentionPolicy

log = get_logger("registry")


@dataclass(frozen=True)
class TagInfo:
    tag: str
    digest: str
    created: _dt.datetime | None = None
    media_type: str = ""
    # Config digests of the image (of each platform's image for a manifest list): what the
    # engine calls the image id, so a running container is recognised by content.
    config_digests: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    tag: str
    digest: str
    keep: bool
    reasons: tuple[str, ...]

    def why(self) -> str:
        return "; ".join(self.reasons) if self.keep else "matched no keep rule"


@dataclass
class RepositoryPlan:
    repository: str
    policy: str
    decisions: list[Decision]
    index_digests: frozenset[str] = frozenset()

    @property
    def kept(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    @property
    def removed(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]

    @property
    def delete_digests(self) -> list[str]:
        kept = {d.digest for d in self.decisions if d.keep}
        return sorted({d.digest for d in self.decisions if not d.keep} - kept)

    def to_json(self) -> dict[str, Any]:
        return {"repository": self.repository, "policy": self.policy,
                "delete_digests": self.delete_digests,
                "tags": [{"tag": d.tag, "digest": d.digest, "keep": d.keep, "why": d.why()} for d in self.decisions]}


@dataclass
class RetentionPlan:
    repositories: list[RepositoryPlan] = field(default_factory=list)
    unmanaged: list[str] = field(default_factory=list)  # repositories no policy matches: never touched

    def to_json(self) -> dict[str, Any]:
        return {"repositories": [r.to_json() for r in self.repositories], "untouched": self.unmanaged}

    def render(self) -> str:
        lines: list[str] = []
        for rp in self.repositories:
            lines.append(f"{rp.repository}  (policy {rp.policy}): keep {len(rp.kept)}, delete {len(rp.removed)} "
                         f"tag(s) in {len(rp.delete_digests)} manifest(s)")
            for d in sorted(rp.decisions, key=lambda d: (not d.keep, _order_key(d.tag))):
                lines.append(f"  {'keep  ' if d.keep else 'DELETE'} {d.tag:<32} {d.digest[:19]}  {d.why()}")
        if self.unmanaged:
            lines.append(f"untouched (no policy): {', '.join(self.unmanaged)}")
        if not self.repositories and not self.unmanaged:
            lines.append("no repositories")
        return "\n".join(lines)


def _order_key(tag: str) -> tuple:
    v = parse_version(tag)
    return (0, tuple(-x if isinstance(x, int) else x for x in v.key()[:4]), tag) if v else (1, (), tag)


def plan_repository(repository: str, tags: Iterable[TagInfo], policy: RetentionPolicy, deployed: DeployedSet,
                    now: _dt.datetime) -> RepositoryPlan:
    infos = list(tags)
    reasons: dict[str, list[str]] = {t.tag: [] for t in infos}

    releases, prereleases = [], []
    for t in infos:
        v = parse_version(t.tag)
        if v is not None:
            (prereleases if v.is_prerelease else releases).append((v.key(), t.tag))
    for label, pool, count in (("release", releases, policy.keep_last),
                               ("pre-release", prereleases, policy.keep_last_prereleases)):
        pool.sort(reverse=True)
        for rank, (_, tag) in enumerate(pool[:count], start=1):
            reasons[tag].append(f"newest {count} {label}s (#{rank})")

    patterns = [re.compile(p) for p in policy.keep_tags]
    for t in infos:
        hit = next((p.pattern for p in patterns if p.fullmatch(t.tag)), None)
        if hit is not None:
            reasons[t.tag].append(f"matches keep pattern {hit!r}")
        if policy.keep_days is not None:
            if t.created is None:
                reasons[t.tag].append("creation time unknown (kept to be safe)")
            else:
                age = now - t.created
                if age < _dt.timedelta(days=policy.keep_days):
                    reasons[t.tag].append(f"built {age.days} day(s) ago, younger than {policy.keep_days:g}")
        source = (deployed.tags.get((repository, t.tag)) or deployed.digests.get((repository, t.digest))
                  or next((deployed.image_ids[d] for d in (t.digest, *sorted(t.config_digests))
                           if d in deployed.image_ids), None))
        if source:
            reasons[t.tag].append(f"deployed: {source}")

    # One delete removes every tag of a digest, so a kept tag protects its siblings.
    keeper: dict[str, str] = {}
    for t in infos:
        if reasons[t.tag]:
            keeper.setdefault(t.digest, t.tag)
    decisions: list[Decision] = []
    for t in infos:
        own = reasons[t.tag]
        if not own and t.digest in keeper:
            own = [f"shares its digest with kept tag {keeper[t.digest]}"]
        decisions.append(Decision(t.tag, t.digest, bool(own), tuple(own)))
    indexes = frozenset(t.digest for t in infos if t.media_type in INDEX_TYPES)
    return RepositoryPlan(repository, policy.repository, decisions, indexes)


def _parse_created(value: Any) -> _dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    # Go writes nanoseconds; Python reads at most microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_dt.timezone.utc)


def collect_tags(client: RegistryClient, repository: str, *, with_created: bool, with_configs: bool = False,
                 workers: int = 8) -> list[TagInfo]:
    """Every tag of REPOSITORY with its digest (and image creation time when a policy needs ages,
    and config digests when running containers must be recognised by image id)."""
    tags = client.tags(repository)

    def head(tag: str) -> tuple[str, str, str] | None:
        try:
            digest, media_type = client.manifest_head(repository, tag)
        except NotFound:
            return None  # deleted since the listing
        return tag, digest, media_type

    def read(digest: str) -> tuple[_dt.datetime | None, frozenset[str]]:
        try:
            manifest = client.get_manifest(repository, digest)
            configs = frozenset(_config_digests(client, manifest)) if with_configs else frozenset()
            created = _parse_created(client.image_config(manifest).get("created")) if with_created else None
        except NotFound:
            return None, frozenset()
        return created, configs

    with ThreadPoolExecutor(max_workers=workers) as pool:
        heads = [h for h in pool.map(head, tags) if h is not None]
        details: dict[str, tuple[_dt.datetime | None, frozenset[str]]] = {}
        if with_created or with_configs:
            digests = sorted({d for _, d, _ in heads})
            details = dict(zip(digests, pool.map(read, digests)))
    return [TagInfo(tag, digest, details.get(digest, (None, frozenset()))[0], media_type,
                    details.get(digest, (None, frozenset()))[1])
            for tag, digest, media_type in heads]


def _config_digests(client: RegistryClient, manifest: Manifest) -> list[str]:
    if not manifest.is_index:
        config = manifest.data.get("config")
        return [config["digest"]] if isinstance(config, dict) and "digest" in config else []
    found: list[str] = []
    for child in manifest.children():
        try:
            found += _config_digests(client, client.get_manifest(manifest.repository, child))
        except NotFound:
            continue
    return found


def plan(client: RegistryClient, settings: RegistryComponentSettings, deployed: DeployedSet,
         repositories: list[str] | None = None, now: _dt.datetime | None = None) -> RetentionPlan:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    result = RetentionPlan()
    for repository in repositories if repositories is not None else client.catalog():
        policy = settings.policy_for(repository)
        if policy is None:
            result.unmanaged.append(repository)
            continue
        infos = collect_tags(client, repository, with_created=policy.keep_days is not None,
                             with_configs=bool(deployed.image_ids))
        result.repositories.append(plan_repository(repository, infos, policy, deployed, now))
    return result


@dataclass
class ApplyResult:
    deleted: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (repository, digest, why)

    def to_json(self) -> dict[str, Any]:
        return {"deleted": [{"repository": r, "digest": d} for r, d in self.deleted],
                "skipped": [{"repository": r, "digest": d, "why": w} for r, d, w in self.skipped]}


def apply(client: RegistryClient, plan_: RetentionPlan,
          progress: Callable[[str], None] = lambda _: None) -> ApplyResult:
    """Delete what PLAN_ says, after checking no tag moved onto a doomed digest since planning."""
    result = ApplyResult()
    for rp in plan_.repositories:
        doomed = set(rp.delete_digests)
        if not doomed:
            continue
        planned = {d.tag: d.digest for d in rp.decisions}
        now = {t.tag: t.digest for t in collect_tags(client, rp.repository, with_created=False)}
        for tag, digest in now.items():
            if digest in doomed and planned.get(tag) != digest:
                doomed.discard(digest)
                result.skipped.append((rp.repository, digest, f"tag {tag} points at it since planning"))
        children = _orphaned_children(client, rp, doomed)
        for digest in sorted(doomed) + children:
            try:
                client.delete_manifest(rp.repository, digest)
            except NotFound:
                pass  # already gone: the goal is reached
            result.deleted.append((rp.repository, digest))
            log.info("registry manifest deleted", repository=rp.repository, digest=digest)
            progress(f"deleted {rp.repository}@{digest}")
    return result


def _orphaned_children(client: RegistryClient, rp: RepositoryPlan, doomed: set[str]) -> list[str]:
    """Per-platform manifests of doomed manifest lists that no kept manifest list still names."""
    doomed_indexes = [d for d in doomed if d in rp.index_digests]
    if not doomed_indexes:
        return []
    kept = {d.digest for d in rp.decisions if d.keep}
    still_named = set(kept)
    for digest in kept & rp.index_digests:
        still_named.update(client.get_manifest(rp.repository, digest).children())
    orphans: set[str] = set()
    for digest in doomed_indexes:
        orphans.update(c for c in client.get_manifest(rp.repository, digest).children() if c not in still_named)
    return sorted(orphans - doomed)
