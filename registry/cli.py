"""`asci registry ...`: list, inspect, promote, retain, collect garbage, manage users.

Every failure is an AsciError: `asci` prints it as one line on stderr ("asci
registry: ..." with the registry's own error code), exit code 2 for malformed
input and 1 for everything else.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from asci_core.config import Config
from asci_core.errors import EXIT_FAILED


def _client(config: Config):
    from registry.client import RegistryClient
    from registry.service import registry_access

    return RegistryClient(registry_access(config))


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def cmd_ls(args: argparse.Namespace) -> int:
    client = _client(args.config_obj)
    if not args.repository:
        repos = client.catalog()
        if args.json:
            _print_json(repos)
        else:
            print("\n".join(repos) if repos else "(no repositories)")
        return 0
    from registry.reference import check_repository
    from registry.semver import sort_tags

    repo = check_repository(args.repository)
    tags = sort_tags(client.tags(repo))
    rows = [(tag, client.manifest_digest(repo, tag)) for tag in tags]
    if args.json:
        _print_json([{"tag": t, "digest": d} for t, d in rows])
    else:
        width = max((len(t) for t, _ in rows), default=3)
        for tag, digest in rows:
            print(f"{tag:<{width}}  {digest}")
    return 0


def cmd_tags(args: argparse.Namespace) -> int:
    from registry.reference import check_repository
    from registry.semver import sort_tags

    tags = sort_tags(_client(args.config_obj).tags(check_repository(args.repository)))
    if args.json:
        _print_json(tags)
    else:
        for tag in tags:
            print(tag)
    return 0


def cmd_digest(args: argparse.Namespace) -> int:
    from registry.reference import parse_reference
    from registry.service import registry_access

    ref = parse_reference(args.reference, address=registry_access(args.config_obj).address)
    print(_client(args.config_obj).manifest_digest(ref.repository, ref.reference))
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from registry.reference import parse_reference
    from registry.service import registry_access

    address = registry_access(args.config_obj).address
    src = parse_reference(args.source, address=address)
    dst = parse_reference(args.target, default_tag=None, address=address)
    digest = _client(args.config_obj).promote(src, dst)
    shown = f"{dst.repository}:{dst.tag or src.tag}"
    print(f"promoted {src} -> {shown} ({digest})")
    return 0


def _deployed(config: Config, address: str):
    import docker

    from asci_core.stack.docker_engine import docker_client
    from registry.deployed import ConfiguredDeployments, DeployedSet, DeploymentSourceError, EngineDeployments

    try:
        engine = docker_client(config.stack.docker.socket, timeout=30)
    except docker.errors.DockerException as exc:
        raise DeploymentSourceError(f"cannot reach the Docker engine to see what is deployed ({exc})") from None
    try:
        return DeployedSet.gather([ConfiguredDeployments(config.registry.deployed, address),
                                   EngineDeployments(engine, address, config.registry.deployed_label)])
    finally:
        engine.close()


def cmd_retain(args: argparse.Namespace) -> int:
    from registry import retention
    from registry.reference import check_repository
    from registry.service import registry_access

    config = args.config_obj
    if not config.registry.retention:
        print("asci registry: no retention policies in registry.retention: nothing to do", file=sys.stderr)
        return EXIT_FAILED
    client = _client(config)
    repos = [check_repository(r) for r in args.repository] or None
    deployed = _deployed(config, registry_access(config).address)
    plan = retention.plan(client, config.registry, deployed, repos)
    out: dict[str, Any] = {"dry_run": args.dry_run, "plan": plan.to_json()}
    if not args.json:
        print(plan.render())
    if args.dry_run:
        if args.json:
            _print_json(out)
        return 0
    result = retention.apply(client, plan)
    out["applied"] = result.to_json()
    if not args.json:
        print(f"deleted {len(result.deleted)} manifest(s)" +
              "".join(f"\nskipped {r}@{d}: {why}" for r, d, why in result.skipped))
    if not args.no_gc and config.stack.registry.managed:
        from registry.gc import garbage_collect

        gc = garbage_collect(config)
        out["gc"] = gc.to_json()
        if not args.json:
            print(_gc_line(gc))
    elif not args.json:
        print("garbage collection not run: blobs are freed by `asci registry gc` on the registry host")
    if args.json:
        _print_json(out)
    return 0


def _gc_line(gc) -> str:
    return (f"garbage collection: {gc.blobs_deleted} blob(s) deleted, {gc.freed} bytes freed "
            f"({gc.bytes_before} -> {gc.bytes_after} bytes on disk) in {gc.seconds:.1f} s")


def cmd_gc(args: argparse.Namespace) -> int:
    from registry.gc import garbage_collect

    result = garbage_collect(args.config_obj)
    if args.json:
        _print_json(result.to_json())
    else:
        print(_gc_line(result))
    return 0


def _store(config: Config):
    from registry.service import registry_dir
    from registry.users import UserError, UserStore

    if not config.stack.registry.managed:
        raise UserError("stack.registry.managed is false: manage users where the site registry runs")
    return UserStore(registry_dir(config))


def cmd_users_add(args: argparse.Namespace) -> int:
    from registry.users import Role

    password = sys.stdin.readline().rstrip("\r\n") if args.password_stdin else None
    generated = _store(args.config_obj).add(args.user, Role(args.role), password)
    if password is None:
        # The only time this password is ever shown: it is stored as a bcrypt hash alone.
        print(f"user {args.user} added with role {args.role}; password (shown once, store it now):")
        print(generated)
    else:
        print(f"user {args.user} added with role {args.role}")
    return 0


def cmd_users_remove(args: argparse.Namespace) -> int:
    _store(args.config_obj).remove(args.user)
    print(f"user {args.user} removed")
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    users = _store(args.config_obj).list()
    if args.json:
        _print_json([{"user": u.name, "role": u.role.value if u.role else None} for u in users])
    else:
        for u in users:
            print(f"{u.name}\t{u.role.value if u.role else '(no role: no access)'}")
    return 0


def register(subparsers: Any) -> None:
    reg = subparsers.add_parser("registry", help="the facility registry: list, promote, retain, gc, users")
    reg.set_defaults(error_prefix="asci registry")
    sub = reg.add_subparsers(dest="action", required=True, metavar="ACTION")

    def add(name: str, func: Callable[[argparse.Namespace], int], text: str, json_flag: bool = True):
        p = sub.add_parser(name, help=text)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)
        return p

    add("ls", cmd_ls, "list repositories, or the tags and digests of REPO").add_argument("repository", nargs="?")
    add("tags", cmd_tags, "tags of REPO in version order").add_argument("repository")
    add("digest", cmd_digest, "manifest digest of REPO:TAG", json_flag=False).add_argument("reference")
    p = add("promote", cmd_promote, "put SRC under DST inside the registry (no pull, same digest)", json_flag=False)
    p.add_argument("source", metavar="SRC", help="repo:tag or repo@digest")
    p.add_argument("target", metavar="DST", help="repo:tag (repo alone keeps the source tag)")
    p = add("retain", cmd_retain, "apply registry.retention: delete what no rule keeps, then collect garbage")
    p.add_argument("--dry-run", action="store_true", help="print the plan (what goes, what stays, why); change nothing")
    p.add_argument("--no-gc", action="store_true", help="delete manifests but do not run garbage collection")
    p.add_argument("repository", nargs="*", help="only these repositories (default: every repository)")
    add("gc", cmd_gc, "garbage-collect the managed registry's storage (restarts it read-only meanwhile)")

    users = sub.add_parser("users", help="registry users and their roles (pull, push, admin)")
    users_sub = users.add_subparsers(dest="users_action", required=True, metavar="ACTION")
    p = users_sub.add_parser("add", help="add a user; a generated password is printed once")
    p.add_argument("user")
    p.add_argument("--role", required=True, choices=["pull", "push", "admin"])
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin instead of generating one")
    p.set_defaults(func=cmd_users_add)
    p = users_sub.add_parser("remove", help="remove a user (their tokens expire within registry.auth.token_ttl)")
    p.add_argument("user")
    p.set_defaults(func=cmd_users_remove)
    p = users_sub.add_parser("list", help="users and roles (never passwords)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_users_list)
