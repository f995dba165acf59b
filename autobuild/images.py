"""The image family under images/: which folder is built FROM which, and content-addressed builds.

Each folder with a Dockerfile is one image, pushed as REGISTRY/<repository> (desktops under
`bl/`, the platform as `asci/platform`) — the same repositories autobuild builds from Bitbucket
with the same Dockerfiles. A folder's parent is found from its FROM lines (autobuild's parser),
so parents are always built first. Every image carries a label with a hash of its inputs (the
folder's files and modes, the parent's image id, the build arguments; for the platform image the
distribution's sources too): building again with unchanged inputs is a cache hit with no call to
`docker build`, so the tests build each image once per machine.

A folder may name, one per line in its `context-files`, files its build context needs that are not
in the repository (e.g. a site's VirtualGL package): the site's configuration says where each one is
(`autobuild.image_files`), and the build copies them into the context and hashes their contents.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import docker
import docker.errors

from autobuild import builder
from autobuild.errors import BuildError
from autobuild.inheritance import parse_from_lines, split_reference
from registry.client import RegistryClient
from registry.service import RegistryAccess

INPUTS_LABEL = "asci.image.inputs"
NAME_LABEL = "asci.image.name"
CONTEXT_FILES = "context-files"  # names of files the context needs from configuration
PLATFORM = "asci"  # the folder whose context also carries this repository's wheel
SOURCE_ROOT = Path(__file__).resolve().parent.parent
# What the platform image installs: changing any of these changes its inputs.
DISTRIBUTION_SOURCES = ("pyproject.toml", "README.md", "asci_core", "autobuild", "registry", "alerts",
                        "logging/asci_logging")


def default_images_dir() -> Path:
    return SOURCE_ROOT / "images"


def repository_of(name: str) -> str:
    return "asci/platform" if name == PLATFORM else f"bl/{name}"


@dataclass
class ImageSpec:
    name: str  # folder name, e.g. "desktop-base"
    folder: Path
    repository: str  # inside the registry, e.g. "bl/desktop-base"
    declared_args: set[str]
    parents: list[str] = field(default_factory=list)  # family members it is built FROM
    external_bases: list[str] = field(default_factory=list)  # e.g. debian:bookworm
    context_files: dict[str, Path] = field(default_factory=dict)  # name in the context -> file on this host


@dataclass
class BuildOutcome:
    name: str
    ref: str
    image_id: str
    inputs: str
    cached: bool
    seconds: float
    digest: str | None = None


class Family:
    """The images under IMAGES_DIR, for one registry address and base image."""

    def __init__(self, images_dir: Path, access: RegistryAccess, base_image: str,
                 context_files: Mapping[str, Mapping[str, Path]] | None = None):
        """CONTEXT_FILES: image folder name -> {name in its build context: file on this host}."""
        self.images_dir = images_dir
        self.access = access
        self.base_image = base_image
        if not images_dir.is_dir():
            raise BuildError("setup", f"no images folder at {images_dir}")
        self.specs: dict[str, ImageSpec] = {}
        for dockerfile in sorted(images_dir.glob("*/Dockerfile")):
            name = dockerfile.parent.name
            text = dockerfile.read_text()
            declared = {line.split()[1].split("=", 1)[0] for line in text.splitlines()
                        if line.strip().upper().startswith("ARG ") and len(line.split()) > 1}
            self.specs[name] = ImageSpec(name, dockerfile.parent, repository_of(name), declared,
                                         context_files=_context_files(dockerfile.parent, (context_files or {}).get(name, {})))
        by_image = {f"{access.address}/{s.repository}": s.name for s in self.specs.values()}
        for spec in self.specs.values():
            for line in parse_from_lines((spec.folder / "Dockerfile").read_text(), self.build_args(spec, "latest")):
                image_name = split_reference(line.image)[0]
                if image_name in by_image:
                    if by_image[image_name] not in spec.parents:  # a multi-stage build names it twice
                        spec.parents.append(by_image[image_name])
                elif line.image not in spec.external_bases:
                    spec.external_bases.append(line.image)

    def ref(self, name: str, tag: str) -> str:
        return f"{self.access.address}/{self.specs[name].repository}:{tag}"

    def build_args(self, spec: ImageSpec, tag: str) -> dict[str, str]:
        offered = {"BASE_IMAGE": self.base_image, "REGISTRY": self.access.address, "BASE_TAG": tag}
        return {k: v for k, v in offered.items() if k in spec.declared_args}

    def order(self, names: list[str] | None = None) -> list[str]:
        """NAMES (default: all) and their ancestors, parents before children."""
        unknown = [n for n in names or [] if n not in self.specs]
        if unknown:
            raise BuildError("setup", f"no image folder named {', '.join(unknown)} "
                                      f"(have: {', '.join(sorted(self.specs))})")
        wanted: set[str] = set()
        pending = list(names or self.specs)
        while pending:
            name = pending.pop()
            if name not in wanted:
                wanted.add(name)
                pending.extend(self.specs[name].parents)
        order: list[str] = []
        while len(order) < len(wanted):
            ready = sorted(n for n in wanted - set(order) if all(p in order for p in self.specs[n].parents))
            if not ready:
                raise BuildError("setup", f"images FROM each other in a cycle: {', '.join(sorted(wanted - set(order)))}")
            order.extend(ready)
        return order

    def depth(self, name: str) -> int:
        parents = self.specs[name].parents
        return 0 if not parents else 1 + max(self.depth(p) for p in parents)


def _context_files(folder: Path, offered: Mapping[str, Path]) -> dict[str, Path]:
    """The files FOLDER's `context-files` asks for, each found where the configuration says."""
    listing = folder / CONTEXT_FILES
    wanted = [line.strip() for line in listing.read_text().splitlines()
              if line.strip() and not line.startswith("#")] if listing.is_file() else []
    unasked = sorted(set(offered) - set(wanted))
    if unasked:
        raise BuildError("setup", f"images/{folder.name} does not use {', '.join(unasked)} "
                                  f"(its {CONTEXT_FILES} lists: {', '.join(wanted) or 'nothing'})")
    found: dict[str, Path] = {}
    for name in wanted:
        if name not in offered:
            continue  # only an error when this image is built: see _require_context_files
        path = Path(offered[name])
        if not path.is_file():
            raise BuildError("setup", f"images/{folder.name} needs {name}: {path} is not a readable file")
        found[name] = path
    return found


def _missing_context_files(spec: ImageSpec) -> list[str]:
    listing = spec.folder / CONTEXT_FILES
    if not listing.is_file():
        return []
    return [line.strip() for line in listing.read_text().splitlines()
            if line.strip() and not line.startswith("#") and line.strip() not in spec.context_files]


def _require_context_files(spec: ImageSpec) -> None:
    missing = _missing_context_files(spec)
    if missing:
        raise BuildError("setup", f"images/{spec.name} needs {', '.join(missing)} in its build context: name the "
                                  f"file(s) in autobuild.image_files (image: {spec.name}, name: ..., path: ...)")


def _files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        if "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        if path.is_file() or path.is_symlink():
            yield path


def inputs_hash(spec: ImageSpec, parent_ids: list[str], build_args: dict[str, str]) -> str:
    digest = hashlib.sha256()

    def add(*parts: str | bytes) -> None:
        for part in parts:
            data = part.encode() if isinstance(part, str) else part
            digest.update(len(data).to_bytes(8, "big") + data)

    add("folder")
    for path in _files(spec.folder):
        mode = "link" if path.is_symlink() else oct(path.stat().st_mode & 0o777)
        add(str(path.relative_to(spec.folder)), mode, os.readlink(path) if path.is_symlink() else path.read_bytes())
    add("context files")
    for name, path in sorted(spec.context_files.items()):
        add(name, hashlib.sha256(path.read_bytes()).hexdigest())
    add("parents", *parent_ids)
    add("args", *(f"{k}={v}" for k, v in sorted(build_args.items())))
    if spec.name == PLATFORM:
        add("distribution")
        for entry in DISTRIBUTION_SOURCES:
            root = SOURCE_ROOT / entry
            for path in ([root] if root.is_file() else _files(root)):
                add(str(path.relative_to(SOURCE_ROOT)), path.read_bytes())
    return digest.hexdigest()


def content_tag(inputs: str) -> str:
    """The tag that names an image by its inputs: what the cache looks up, and what children build FROM."""
    return f"inputs-{inputs[:40]}"


def _image_with_inputs(client: docker.DockerClient, ref: str, inputs: str):
    # By tag, not by label: a build in progress leaves untagged steps that inherit their parent's labels.
    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    return image if image.labels.get(INPUTS_LABEL) == inputs else None


def _local_image_id(client: docker.DockerClient, ref: str) -> str:
    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        raise BuildError("build", f"base image {ref} is not on this engine (`asci stack up` bootstraps "
                                  f"{ref} when it is the configured base)") from None


def _git_revision() -> str:
    try:
        done = subprocess.run(["git", "-C", str(SOURCE_ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def platform_context(spec: ImageSpec, into: Path, log: builder.LogSink) -> None:
    """The platform folder plus wheels of this working tree and its dependencies under dist/.

    pip runs here, where the site's package index and certificates work; inside the build
    only `pip install --no-index` runs, so the image build needs no network but Debian's mirror.
    """
    shutil.copytree(spec.folder, into, dirs_exist_ok=True)
    log.write("building wheels of the working tree and its dependencies")
    with tempfile.TemporaryDirectory(prefix="asci-src-") as scratch:
        src = Path(scratch)
        for entry in DISTRIBUTION_SOURCES:
            origin, target = SOURCE_ROOT / entry, src / entry
            target.parent.mkdir(parents=True, exist_ok=True)
            if origin.is_file():
                shutil.copy2(origin, target)
            else:
                # No build/ or *.egg-info from an editable install, no caches.
                shutil.copytree(origin, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(into / "dist"),
                               str(src)], capture_output=True, text=True)
    if done.returncode != 0:
        tail = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()][-3:]
        raise BuildError("build", f"building the asci wheels failed: {' | '.join(tail)}")


def build_family(client: docker.DockerClient, family: Family, names: list[str] | None, *, tag: str,
                 push: bool, log: builder.LogSink) -> list[BuildOutcome]:
    """Build NAMES and their parents in order; a cache hit when an image with the same inputs exists."""
    outcomes: list[BuildOutcome] = []
    ids: dict[str, str] = {}
    revision = _git_revision()
    content_tags: dict[str, str] = {}
    order = family.order(names)
    if names is None:
        # "Everything" means everything this site can build: an image whose files are not configured
        # (and its children) is left out with a line saying why; named explicitly, it is an error.
        unbuildable = {n for n in order if _missing_context_files(family.specs[n])}
        for name in order:
            if name in unbuildable or any(p in unbuildable for p in family.specs[name].parents):
                unbuildable.add(name)
        for name in sorted(unbuildable):
            log.write(f"{name}: skipped, its build context needs files not configured in autobuild.image_files")
        order = [n for n in order if n not in unbuildable]
    for name in order:
        _require_context_files(family.specs[name])
    for name in order:
        spec = family.specs[name]
        started = time.monotonic()
        repo = family.ref(name, tag).rsplit(":", 1)[0]
        # Children are built FROM their parent's content tag, never a tag that may move meanwhile.
        args = family.build_args(spec, content_tags[spec.parents[0]] if spec.parents else tag)
        parent_ids = [ids[p] for p in spec.parents] + [_local_image_id(client, b) for b in spec.external_bases]
        inputs = inputs_hash(spec, parent_ids, args)
        content_tags[name] = content_tag(inputs)
        ref = f"{repo}:{content_tags[name]}"
        cached = _image_with_inputs(client, ref, inputs)
        if cached is not None:
            log.write(f"{name}: inputs {inputs[:12]} unchanged, {ref} is {cached.short_id} (cached)")
            image_id, was_cached = cached.id, True
        else:
            labels = {
                "org.opencontainers.image.title": name,
                "org.opencontainers.image.source": f"images/{name}",
                "org.opencontainers.image.revision": revision,
                "org.opencontainers.image.version": tag,
                "org.opencontainers.image.created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "org.opencontainers.image.base.name": ", ".join(
                    [family.ref(p, content_tags[p]) for p in spec.parents] + spec.external_bases),
                INPUTS_LABEL: inputs,
                NAME_LABEL: name,
            }
            with tempfile.TemporaryDirectory(prefix=f"asci-image-{name}-") as scratch:
                context = spec.folder
                if name == PLATFORM:
                    context = Path(scratch) / "context"
                    platform_context(spec, context, log)
                elif spec.context_files:
                    context = Path(scratch) / "context"
                    shutil.copytree(spec.folder, context)
                    for file_name, path in spec.context_files.items():
                        shutil.copyfile(path, context / file_name)
                image_id = builder.build_image(client, context=context, dockerfile=context / "Dockerfile", ref=ref,
                                               build_args=args, labels=labels, log=log)
            was_cached = False
        client.api.tag(image_id, repo, tag, force=True)
        ref = f"{repo}:{tag}"
        ids[name] = image_id
        outcome = BuildOutcome(name, ref, image_id, inputs, was_cached, 0.0)
        if push:
            repository = family.specs[name].repository
            outcome.digest = builder.push_image(client, repo, tag, family.access, log)
            builder.verify_digest(RegistryClient(family.access), repository, tag, outcome.digest)
            log.write(f"{name}: the registry holds {repository}:{tag} as {outcome.digest}")
        outcome.seconds = time.monotonic() - started
        outcomes.append(outcome)
    return outcomes


@dataclass
class Listed:
    name: str
    depth: int
    repository: str
    rows: list[dict]


def list_family(client: docker.DockerClient, family: Family) -> list[Listed]:
    """Each image of the family (parents first) with its local tags, sizes, digests and inputs."""
    listed = []
    for name in family.order():
        spec = family.specs[name]
        repo = f"{family.access.address}/{spec.repository}"
        rows = []
        for image in client.images.list(name=repo):
            digests = [d.split("@", 1)[1] for d in image.attrs.get("RepoDigests", []) if d.startswith(repo + "@")]
            for ref in image.tags:
                # Content tags (inputs-...) are the cache's names; the inputs column shows them.
                if ref.rsplit(":", 1)[0] != repo or ref.rsplit(":", 1)[1].startswith("inputs-"):
                    continue
                rows.append({"tag": ref.rsplit(":", 1)[1], "id": image.short_id.split(":", 1)[1],
                             "size_mb": round(image.attrs.get("Size", 0) / 1e6, 1),
                             "digest": digests[0] if digests else None,
                             "inputs": image.labels.get(INPUTS_LABEL), "created": image.attrs.get("Created", "")})
        listed.append(Listed(name, family.depth(name), spec.repository, sorted(rows, key=lambda r: r["tag"])))
    return listed
