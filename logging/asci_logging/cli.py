"""`asci logging ...`: ship the journal, install the engine assets, show the shipper's state."""
from __future__ import annotations

import argparse
import json
import sys

from asci_logging.assets import load_assets
from asci_logging.search_client import SearchAccess


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("logging", help="journald → Elasticsearch: the shipper and its pipelines")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    ship = sub.add_parser("ship", help="run the shipper in the foreground (SIGTERM/SIGINT stop it cleanly)")
    ship.add_argument("--until-idle", type=float, metavar="SECONDS",
                      help="stop once the journal has been quiet this long and everything is acknowledged")
    ship.set_defaults(func=cmd_ship)

    install = sub.add_parser("install", help="put pipelines, index template and retention policy into the engine")
    install.add_argument("--check", action="store_true", help="only report what would change; exit 1 if anything would")
    install.add_argument("--json", action="store_true", help="machine-readable output")
    install.set_defaults(func=cmd_install)

    uninstall = sub.add_parser("uninstall", help="remove the pipelines and the index template (indices stay)")
    uninstall.set_defaults(func=cmd_uninstall)

    status = sub.add_parser("status", help="the shipper's saved cursor and last metrics snapshot")
    status.set_defaults(func=cmd_status)

    kibana = sub.add_parser("kibana", help="print the Kibana saved objects (NDJSON) for the configured prefix")
    kibana.set_defaults(func=cmd_kibana)


def cmd_ship(args: argparse.Namespace) -> int:
    from asci_logging.shipper import Shipper

    try:
        shipper = Shipper.from_config(args.config_obj, until_idle=args.until_idle)
    except ValueError as exc:
        print(f"asci: configuration error: {args.config_obj.source}: {exc}", file=sys.stderr)
        return 2
    shipper.install_signal_handlers()
    return shipper.run()


def _installer(args: argparse.Namespace):
    from asci_logging.installer import Installer

    config = args.config_obj
    search = SearchAccess.from_config(config)
    assets = load_assets(config.logging.prefix, config.logging.retention_days)
    return Installer(search.url, search.session(), assets)


def cmd_install(args: argparse.Namespace) -> int:
    changes = _installer(args).run(check_only=args.check)
    if args.json:
        print(json.dumps([c.__dict__ for c in changes], indent=2))
    else:
        width = max(len(c.kind) for c in changes)
        for c in changes:
            detail = f"  ({c.detail})" if c.detail else ""
            print(f"{c.kind.ljust(width)}  {c.name}: {c.action}{detail}")
    pending = [c for c in changes if c.action.startswith("would")]
    return 1 if args.check and pending else 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    changes = _installer(args).remove()
    for c in changes:
        print(f"{c.kind}  {c.name}: {c.action}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from asci_logging.cursor_store import CursorStore
    from asci_logging.shipper import state_paths

    cursor_file, metrics_file = state_paths(args.config_obj)
    print(f"cursor ({cursor_file}): {CursorStore(cursor_file).load() or 'none saved'}")
    try:
        print(metrics_file.read_text(), end="")
    except FileNotFoundError:
        print(f"no metrics yet ({metrics_file})")
    return 0


def cmd_kibana(args: argparse.Namespace) -> int:
    from asci_logging.kibana import saved_objects, to_ndjson

    sys.stdout.write(to_ndjson(saved_objects(args.config_obj.logging.prefix)))
    return 0
