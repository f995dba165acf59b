"""clone → build → push → verify → latest: one build, each stage timed and logged.

Runs in a worker thread. Stages raise TransientError (retry later) or
BuildError (final); every line the engine streams goes to the build's log.
Nothing from a webhook reaches a shell: git and the engine get arguments.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import re
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import quote

import docker
import docker.errors
import git

from asci_core.stack.docker_engine import docker_client
from autobuild import builder
from autobuild.buildlog import BuildLog
from autobuild.errors import BuildError, TransientError
from autobuild.inheritance import FromLine, parse_from_lines
from autobuild.settings import BitbucketHostSettings, RepositorySettings
from autobuild.store import Build
from registry.client import RegistryClient
from registry.errors import NotFound, RegistryError, RegistryUnavailable
from registry.semver import highest_release
from registry.service import RegistryAccess


@dataclass
class StageRecord:
    name: str
    started_at: float
    finished_at: float | None = None
    outcome: str = "running"
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Result:
    digest: str
    parents: list[dict[str, str | None]]  # FROM images, and the ARG that supplies each tag
    latest_moved: bool
    stages: list[StageRecord] = field(default_factory=list)
    commit: str = ""  # the commit built (an annotated tag's delivered hash is its tag object)
    tag_object: str | None = None


def image_repository(repo: RepositorySettings) -> str:
    """The repository path inside the registry: configured, or the lower-cased PROJECT/slug."""
    return repo.image or repo.name.lower()


def source_url(host: BitbucketHostSettings, repo: RepositorySettings) -> str:
    project, slug = repo.name.split("/", 1)
    if host.kind == "server":
        return f"{host.url.rstrip('/')}/projects/{project}/repos/{slug}"
    return f"{host.url.rstrip('/')}/{project}/{slug}"


class Secrets:
    """Removes credentials from any text before it is logged or stored."""

    def __init__(self, *values: str | None):
        self._values = sorted({v for raw in values if raw for v in (raw, quote(raw, safe=""))}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, "***")
        return text


def _remove_later(path: Path) -> None:
    """Take a clone out of the way at once and delete it off the build's critical path.

    Deleting a clone's many small files took ~50 ms on a busy disk, between the last stage and the
    build being recorded as done. A name starting with `trash-` that outlives a crash is removed at
    the next start (Pipeline.__init__).
    """
    if not path.exists():
        return
    trash = path.with_name(f"trash-{path.name}-{time.time_ns()}")
    try:
        path.rename(trash)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)
        return
    threading.Thread(target=shutil.rmtree, args=(trash,), kwargs={"ignore_errors": True},
                     name="autobuild-clone-cleanup", daemon=True).start()


class Pipeline:
    def __init__(self, *, workdir: Path, access: RegistryAccess, engine_socket: Path,
                 repositories: dict[str, RepositorySettings], hosts: dict[str, BitbucketHostSettings],
                 succeeded_tags: Callable[[str], list[str]]):
        self.workdir = workdir
        self.access = access
        self.engine_socket = engine_socket
        self.repositories = repositories
        self.hosts = hosts
        self.succeeded_tags = succeeded_tags
        self._api_version: str | None = None  # the engine's API version, asked once rather than per build
        for trash in (workdir / "clones").glob("trash-*"):
            shutil.rmtree(trash, ignore_errors=True)

    def run(self, build: Build, log: BuildLog, on_stage: Callable[[list[StageRecord]], None]) -> Result:
        repo = self.repositories.get(build.repository)
        if repo is None:
            raise BuildError("setup", f"repository {build.repository} is no longer configured")
        host = self.hosts[repo.host]
        stages: list[StageRecord] = []
        image = f"{self.access.address}/{image_repository(repo)}"
        secrets = Secrets(host.password.reveal() if host.password else None,
                          self.access.password.reveal() if self.access.password else None)
        clone_dir = self.workdir / "clones" / f"build-{build.id}"

        @contextmanager
        def stage(name: str) -> Iterator[StageRecord]:
            record = StageRecord(name, time.time())
            stages.append(record)
            on_stage(stages)
            log.write(f"==> {name}")
            try:
                yield record
            except Exception as exc:
                record.outcome = "failed"
                record.finished_at = time.time()
                on_stage(stages)
                if isinstance(exc, (TransientError, BuildError)):
                    exc.args = (secrets.redact(str(exc)),)
                    log.write(f"==> {name} failed: {exc}")
                    raise
                message = secrets.redact(f"{type(exc).__name__}: {exc}")
                log.write(f"==> {name} failed: {message}")
                raise TransientError(name, message) from None
            record.outcome = "ok"
            record.finished_at = time.time()
            on_stage(stages)
            log.write(f"==> {name} done in {record.finished_at - record.started_at:.2f}s")

        client = docker_client(self.engine_socket, timeout=600, version=self._api_version)
        self._api_version = client.api.api_version
        # One registry client per build (builds run in parallel threads): the release check and the
        # verification share its token, so the token service checks our password once, not twice.
        registry = RegistryClient(self.access)
        try:
            with stage("clone"):
                commit, tag_object = self._clone(host, repo, build, clone_dir, log, secrets)
            build = dataclasses.replace(build, commit_sha=commit, tag_object=tag_object)
            with stage("build") as rec:
                parents = self._build(client, repo, host, build, clone_dir, f"{image}:{build.tag}", log)
                rec.note = f"FROM {', '.join(p.image for p in parents) or '(none)'}"
            with stage("push") as rec:
                self._guard_release(client, registry, repo, build, f"{image}:{build.tag}", log)
                digest = self._push(client, image, build.tag, log)
                rec.note = digest
            with stage("verify") as rec:
                self._verify(registry, image_repository(repo), build.tag, digest)
                rec.note = "registry digest matches"
            latest_moved = False
            if repo.move_latest:
                with stage("latest") as rec:
                    latest_moved = self._move_latest(client, registry, image, image_repository(repo), build, digest,
                                                     log)
                    rec.note = "moved" if latest_moved else "a higher version holds latest"
            return Result(digest, [{"image": p.image, "tag_arg": p.tag_arg} for p in parents], latest_moved, stages,
                          commit, tag_object)
        finally:
            client.close()
            _remove_later(clone_dir)

    # --- stages ---------------------------------------------------------------

    def _clone(self, host: BitbucketHostSettings, repo: RepositorySettings, build: Build, dest: Path,
               log: BuildLog, secrets: Secrets) -> tuple[str, str | None]:
        """Clone the tag; (the commit checked out, the annotated tag's object hash or None)."""
        project, slug = repo.name.split("/", 1)
        url = host.clone_url.format(
            project=quote(project, safe=""), slug=quote(slug, safe=""),
            username=quote(host.username or "", safe=""),
            password=quote(host.password.reveal() if host.password else "", safe=""))
        log.write(f"cloning {secrets.redact(url)} at tag {build.tag}")
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            cloned = git.Repo.clone_from(url, dest, branch=build.tag, depth=1, single_branch=True,
                                         env={"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false"})
        except git.GitCommandError as exc:
            text = secrets.redact(str(exc.stderr or exc))
            if re.search(r"not found in upstream|Remote branch .* not found|couldn't find remote ref", text):
                raise BuildError("clone", f"tag {build.tag} does not exist in the repository: {text.strip()}")
            raise TransientError("clone", f"git clone failed: {text.strip()}")
        try:
            # One git call for both (HEAD is the commit; Bitbucket Server names an annotated tag by its
            # tag object, which peels to that commit).
            head, ref = cloned.git.rev_parse("HEAD", f"refs/tags/{build.tag}").split()
        finally:
            cloned.close()
        tag_object = ref if ref != head else None
        if build.commit_sha not in (head, ref):
            raise BuildError("clone", f"tag {build.tag} now points at {head}"
                                      + (f" (tag object {ref})" if tag_object else "")
                                      + f", not at {build.commit_sha} as the webhook said: it moved after the push, "
                                        "and the delivery of the move decides what is built")
        log.write(f"checked out {head}" + (f" (annotated tag {tag_object})" if tag_object else ""))
        return head, tag_object

    def _build(self, client: docker.DockerClient, repo: RepositorySettings, host: BitbucketHostSettings,
               build: Build, clone_dir: Path, ref: str, log: BuildLog) -> list[FromLine]:
        root = clone_dir.resolve()
        context = (root / repo.context).resolve()
        dockerfile = (root / repo.dockerfile).resolve()
        # A symlink in the repository must not lead the build out of the clone.
        for path, what in ((context, "build context"), (dockerfile, "Dockerfile")):
            if not path.is_relative_to(root):
                raise BuildError("build", f"{what} resolves outside the repository")
        if not dockerfile.is_file():
            raise BuildError("build", f"no Dockerfile at {dockerfile.relative_to(root)}")
        args = {**repo.build_args, **build.build_args}
        parents = parse_from_lines(dockerfile.read_text(errors="replace"), args)
        self._fetch_parents(client, parents, log)
        labels = {
            "org.opencontainers.image.source": source_url(host, repo),
            "org.opencontainers.image.revision": build.commit_sha,
            "org.opencontainers.image.version": build.tag,
            "org.opencontainers.image.created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "asci.build.id": str(build.id),
        }
        builder.build_image(client, context=context, dockerfile=dockerfile, ref=ref, build_args=args,
                            labels=labels, log=log)
        return parents

    def _fetch_parents(self, client: docker.DockerClient, parents: list[FromLine], log: BuildLog) -> None:
        builder.pull_bases(client, parents, self.access, log)

    def _guard_release(self, client: docker.DockerClient, registry: RegistryClient, repo: RepositorySettings,
                       build: Build, ref: str, log: BuildLog) -> None:
        """An immutable repository's tag that the registry holds as another image is never pushed again.

        Allowed: the tag is new, the registry holds this very image, or an earlier attempt of this
        build pushed it. Rebuilds for a new parent version replace the tag by design.
        """
        if not repo.immutable_tags or build.trigger == "rebuild":
            return
        repository = image_repository(repo)
        try:
            manifest = registry.get_manifest(repository, build.tag)
            if manifest.data.get("config", {}).get("digest") == client.images.get(ref).id:
                return
            labels = (registry.image_config(manifest).get("config") or {}).get("Labels") or {}
        except NotFound:
            return
        except RegistryUnavailable as exc:
            raise TransientError("push", f"registry unavailable: {exc}") from None
        except RegistryError as exc:
            raise BuildError("push", f"registry: {exc}") from None
        if labels.get("asci.build.id") == str(build.id):
            log.write(f"{repository}:{build.tag} was pushed by an earlier attempt of this build; replacing it")
            return
        raise BuildError("push", f"{repository}:{build.tag} is already in the registry as {manifest.digest}, "
                                 f"another image (from build {labels.get('asci.build.id', 'unknown')}); "
                                 "releases are immutable, so it is not pushed again "
                                 "(immutable_tags: false on the repository allows it)")

    def _push(self, client: docker.DockerClient, image: str, tag: str, log: BuildLog) -> str:
        return builder.push_image(client, image, tag, self.access, log)

    def _verify(self, registry: RegistryClient, repository: str, tag: str, digest: str) -> None:
        builder.verify_digest(registry, repository, tag, digest)

    def _move_latest(self, client: docker.DockerClient, registry: RegistryClient, image: str, repository: str,
                     build: Build, digest: str, log: BuildLog) -> bool:
        top = highest_release([*self.succeeded_tags(build.repository), build.tag])
        if top != build.tag:
            log.write(f"latest stays: {top} is higher than {build.tag}")
            return False
        client.api.tag(f"{image}:{build.tag}", image, "latest", force=True)
        pushed = self._push(client, image, "latest", log)
        self._verify(registry, repository, "latest", pushed)
        if pushed != digest:
            raise BuildError("latest", f"latest was pushed as {pushed}, expected {digest}")
        return True
