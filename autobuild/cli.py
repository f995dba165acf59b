"""`asci builds list | show ID | log ID [-f] | retry ID | graph`, through the running service's API;
`asci images` (autobuild/images_cli.py) is registered here too."""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys

import requests

from asci_core.errors import AsciError
from autobuild import images_cli


def build_id(text: str) -> int:
    # int() would also take Unicode digits ('١') and numbers beyond what the service stores.
    if not (text.isascii() and text.isdigit() and 0 < len(text) <= 19 and 0 < int(text) < 2 ** 63):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a build id (a positive number)")
    return int(text)


def register(sub: argparse._SubParsersAction) -> None:
    builds = sub.add_parser("builds", help="autobuild's builds, through the API of `asci serve`")
    builds.set_defaults(error_prefix="asci builds")
    builds.add_argument("--url", help="service address (default: http://server.host:server.port)")
    actions = builds.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("list", help="recent builds")
    p.add_argument("--repository")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "skipped"])
    p.add_argument("--limit", type=int, default=30)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)
    p = actions.add_parser("show", help="one build: stages, times, digest, error, trigger")
    p.add_argument("id", type=build_id)
    p.set_defaults(func=cmd_show)
    p = actions.add_parser("log", help="a build's log")
    p.add_argument("id", type=build_id)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing until the build ends")
    p.set_defaults(func=cmd_log)
    p = actions.add_parser("retry", help="queue a failed build again (a succeeded one only with --force)")
    p.add_argument("id", type=build_id)
    p.add_argument("--force", action="store_true",
                   help="build a succeeded build again; an immutable repository still never re-pushes "
                        "a tag the registry holds as another image")
    p.set_defaults(func=cmd_retry)
    actions.add_parser("graph", help="which image is built FROM which").set_defaults(func=cmd_graph)
    # `asci images`: the same builder, for the folders under images/.
    images_cli.register(sub)


class ApiError(AsciError):
    """The service is not there, or refused the request; the message says which."""


def _call(args: argparse.Namespace, method: str, path: str, **kw) -> requests.Response:
    cfg = args.config_obj.server
    base = (args.url or f"http://{cfg.host}:{cfg.port}").rstrip("/")
    try:
        resp = requests.request(method, base + path, timeout=kw.pop("timeout", 30), **kw)
    except requests.ConnectionError:
        raise ApiError(f"no ASCI service answers at {base} (is `asci serve` running?)") from None
    if resp.status_code >= 400:
        try:
            message = resp.json().get("error") or resp.text
        except ValueError:
            message = resp.text
        raise ApiError(f"{message} (HTTP {resp.status_code})")
    return resp


def _when(ts: float | None) -> str:
    return "-" if not ts else _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def cmd_list(args: argparse.Namespace) -> int:
    params = {k: v for k, v in (("repository", args.repository), ("status", args.status)) if v}
    builds = _call(args, "GET", "/builds", params={**params, "limit": args.limit}).json()["builds"]
    if args.json:
        print(json.dumps(builds, indent=2))
        return 0
    print(f"{'ID':>5}  {'STATUS':9}  {'REPOSITORY':28}  {'TAG':16}  {'TRIGGER':8}  {'CREATED':19}")
    for b in builds:
        print(f"{b['id']:>5}  {b['status']:9}  {b['repository'][:28]:28}  {b['tag'][:16]:16}  "
              f"{b['trigger']:8}  {_when(b['created_at'])}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    b = _call(args, "GET", f"/builds/{args.id}").json()
    print(f"build {b['id']}: {b['repository']} {b['tag']} at {b['commit_sha']}")
    print(f"  status     {b['status']} (attempts: {b['attempts']})")
    print(f"  trigger    {b['trigger']}" + (f" by build {b['triggered_by']}" if b["triggered_by"] else ""))
    print(f"  created    {_when(b['created_at'])}  started {_when(b['started_at'])}  finished {_when(b['finished_at'])}")
    if b["digest"]:
        print(f"  digest     {b['digest']}")
    if b["error"]:
        print(f"  error      {b['failed_stage']}: {b['error']}")
    for s in b["stages"]:
        took = f"{s['finished_at'] - s['started_at']:.2f}s" if s.get("finished_at") else "..."
        print(f"  stage {s['name']:8} {s['outcome']:8} {took:>8}  {s.get('note', '')}")
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    params = {"follow": "1"} if args.follow else {}
    resp = _call(args, "GET", f"/builds/{args.id}/log", params=params, stream=True, timeout=None)
    for chunk in resp.iter_content(chunk_size=None):
        sys.stdout.write(chunk.decode("utf-8", "replace"))
        sys.stdout.flush()
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    new = _call(args, "POST", f"/builds/{args.id}/retry", params={"force": "1"} if args.force else {}).json()
    if new["build"] is None:
        print(f"build {args.id} already succeeded; nothing queued (--force builds it again)")
        return 0
    print(f"queued build {new['build']} (retry of {args.id})")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    print(_call(args, "GET", "/builds/graph").json()["text"] or "(no successful builds yet)")
    return 0
