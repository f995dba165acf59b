"""`asci services deploy | status | history | rollback`: run on the host of the services' state.

They act on the engines and the state database directly (a per-service file lock keeps them and a
running `asci serve` from rolling the same service at once). A roll that fails exits 1 with one line.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
from contextlib import closing
from dataclasses import asdict
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    services = sub.add_parser("services", help="ASCI's own services: deploy, status, history, rollback")
    services.set_defaults(error_prefix="asci services")
    actions = services.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("deploy", help="make the running containers match the config (idempotent)")
    p.add_argument("name", nargs="?", help="only this service")
    p.set_defaults(func=cmd_deploy)
    p = actions.add_parser("status", help="image, tag, digest, health, since and front of every service; "
                                          "problems flagged with !")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_status)
    p = actions.add_parser("history", help="the rolls of one service, newest first")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_history)
    p = actions.add_parser("rollback", help="back to the previous version; the current tag is not taken again")
    p.add_argument("name")
    p.set_defaults(func=cmd_rollback)
    p = actions.add_parser("check", help="roll following services to the newest tag their policy takes, now")
    p.set_defaults(func=cmd_check)


def _services(args: argparse.Namespace) -> Any:
    from .deployer import Services

    return Services(args.config_obj)


def _when(ts: float | None) -> str:
    return "-" if ts is None else _dt.datetime.fromtimestamp(ts, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def cmd_deploy(args: argparse.Namespace) -> int:
    with closing(_services(args)) as services:
        services.deploy(args.name, report=lambda line: print(line, flush=True))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    with closing(_services(args)) as services:
        services.check_registry()
        for s in services.status():
            print(f"{s.service}: {s.tag or '-'} {s.health}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    with closing(_services(args)) as services:
        rows = services.status()
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
        return 0
    print(f"{'SERVICE':16} {'TAG':12} {'HEALTH':10} {'SINCE':21} {'DIGEST':20} {'FRONT':10} IMAGE")
    for r in rows:
        front = "-" if r.front is None else ("ok" if r.front.problem is None else r.front.state)
        print(f"{r.service:16} {r.tag or '-':12} {r.health:10} {_when(r.since):21} {(r.digest or '-')[:19]:20} "
              f"{front:10} {r.image}")
    for r in rows:
        if r.front is not None:
            print(f"front of {r.service}: {r.front.container} {r.front.state} since {r.front.since or '-'}, "
                  f"forwarding to {r.front.backend or '-'}")
    for r in rows:
        if r.problem:
            print(f"! {r.service}: {r.problem} (`asci services deploy {r.service}` repairs it)")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with closing(_services(args)) as services:
        rolls = services.history(args.name)
    if args.json:
        print(json.dumps([asdict(r) for r in rolls], indent=2))
        return 0
    print(f"{'STARTED':21} {'FROM':10} {'TO':10} {'RESULT':12} {'SECONDS':>8} {'TRIGGER':10} REASON")
    for r in rolls:
        seconds = "-" if r.duration is None else f"{r.duration:.1f}"
        print(f"{_when(r.started_at):21} {r.from_tag or '-':10} {r.to_tag:10} {r.result:12} {seconds:>8} "
              f"{r.trigger:10} {r.reason or ''}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    with closing(_services(args)) as services:
        print(services.rollback(args.name))
    return 0
