"""`asci images build [NAME...] [--push] [--tag TAG]` and `asci images list`: the family under images/."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from autobuild.errors import BuildError, StageError, TransientError
from autobuild.images import Family, build_family, default_images_dir, list_family
from registry.reference import TAG_RE
from registry.service import registry_access
from asci_core.stack.docker_engine import docker_client

EXIT_FAILED = 1


def register(sub: argparse._SubParsersAction) -> None:
    images = sub.add_parser("images", help="the desktop and platform images under images/")
    images.add_argument("--dir", type=Path, help="images folder (default: this source tree's images/)")
    actions = images.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("build", help="build images (parents first); unchanged inputs are a cache hit")
    p.add_argument("names", nargs="*", metavar="NAME", help="image folders (default: all)")
    p.add_argument("--tag", default="latest", help="image tag (default: latest)")
    p.add_argument("--push", action="store_true", help="push to the registry and verify its digest")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    p.set_defaults(func=cmd_build)
    p = actions.add_parser("list", help="the family tree with local tags, sizes and digests")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)


class _StderrLog:
    """Build output to stderr, so stdout keeps only the result."""

    def __init__(self) -> None:
        self._partial = ""

    def write(self, line: str) -> None:
        print(line.rstrip(), file=sys.stderr, flush=True)

    def write_raw(self, chunk: str) -> None:
        self._partial += chunk
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if line.strip():
                self.write(line)


def _family(args: argparse.Namespace) -> Family:
    config = args.config_obj
    return Family(args.dir or default_images_dir(), registry_access(config), config.stack.base_image.name,
                  context_files=config.autobuild.context_files())


def _client(args: argparse.Namespace) -> docker.DockerClient:
    return docker_client(args.config_obj.stack.docker.socket, timeout=900)


def _guarded(fn):
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except StageError as exc:
            kind = "retry later" if isinstance(exc, TransientError) else "failed"
            print(f"asci images: {exc.stage} {kind}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except (docker.errors.DockerException, requests.exceptions.ConnectionError) as exc:
            print(f"asci images: Docker Engine: {exc}", file=sys.stderr)
            return EXIT_FAILED
    return run


@_guarded
def cmd_build(args: argparse.Namespace) -> int:
    if not TAG_RE.fullmatch(args.tag):
        raise BuildError("setup", f"tag {args.tag!r} is not a valid Docker tag")
    family = _family(args)
    client = _client(args)
    try:
        outcomes = build_family(client, family, args.names or None, tag=args.tag, push=args.push, log=_StderrLog())
    finally:
        client.close()
    if args.json:
        print(json.dumps([o.__dict__ for o in outcomes], indent=2))
        return 0
    for o in outcomes:
        how = "cached" if o.cached else f"built in {o.seconds:.1f}s"
        print(f"{o.name:14} {o.ref}  {o.image_id.split(':', 1)[1][:12]}  {how}"
              + (f"  pushed {o.digest}" if o.digest else ""))
    return 0


@_guarded
def cmd_list(args: argparse.Namespace) -> int:
    family = _family(args)
    client = _client(args)
    try:
        listed = list_family(client, family)
    finally:
        client.close()
    if args.json:
        print(json.dumps([item.__dict__ for item in listed], indent=2))
        return 0
    for item in listed:
        indent = "  " * item.depth
        parents = family.specs[item.name].parents or family.specs[item.name].external_bases
        print(f"{indent}{item.name}  ({family.access.address}/{item.repository}, FROM {', '.join(parents)})")
        if not item.rows:
            print(f"{indent}  (not built: `asci images build {item.name}`)")
        for row in item.rows:
            print(f"{indent}  {row['tag']:12} {row['id'][:12]}  {row['size_mb']:8.1f} MB  "
                  f"digest {row['digest'] or '(not pushed)'}  inputs {(row['inputs'] or '-')[:12]}")
    return 0
