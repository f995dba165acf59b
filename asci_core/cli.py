"""The `asci` command: one sub-command per component."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Sequence

from asci_core import __version__
from asci_core.config import ConfigError, describe, load_config
from asci_core import jsonlog


def _stack_manager(args: argparse.Namespace):
    from asci_core.stack.manager import StackManager

    return StackManager(args.config_obj)


def _print_report(report, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": report.ok, "parts": [p.to_json() for p in report.parts]}, indent=2))
        return
    rows = [("PART", "STATE", "VERSION", "ADDRESS", "STARTED BY", "THIS RUN")]
    for p in report.parts:
        rows.append((p.name, "up" if p.up else "DOWN", p.version or "-", p.address, p.started_by or "-",
                     f"{p.action} ({p.seconds:.1f}s)" if p.action and p.seconds else (p.action or "-")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for p in report.parts:
        if p.detail and not p.up:
            print(f"\n{p.name}: {p.detail}")


def cmd_stack_up(args: argparse.Namespace) -> int:
    report = _stack_manager(args).up()
    _print_report(report, args.json)
    return 0 if report.ok else 1


def cmd_stack_down(args: argparse.Namespace) -> int:
    report = _stack_manager(args).down()
    if args.json:
        print(json.dumps({"stopped": [p.to_json() for p in report.parts]}, indent=2))
    elif not report.parts:
        print("nothing to stop: asci started none of the running parts")
    else:
        for p in report.parts:
            print(f"{p.name}: {p.action}")
    return 0


def cmd_stack_status(args: argparse.Namespace) -> int:
    report = _stack_manager(args).status()
    _print_report(report, args.json)
    return 0 if report.ok else 3


def cmd_serve(args: argparse.Namespace) -> int:
    from asci_core.server import ServeError, serve

    import uvloop

    try:
        # uvloop: the webhook intake spends most of its time in the event loop (measured in bench/).
        uvloop.run(serve(args.config_obj, host=args.host, port=args.port))
    except ServeError as exc:
        print(f"asci: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    print(f"{args.config_obj.source}: ok")
    return 0


def cmd_config_help(args: argparse.Namespace) -> int:
    for key, default, text in describe():
        print(f"{key}\n    {text} [default: {default}]")
    return 0


# Each component adds its own sub-commands: its module has `register(subparsers)`,
# and every handler receives the parsed arguments with the loaded config in `args.config_obj`.
COMPONENT_COMMANDS: tuple[str, ...] = ("autobuild.cli", "registry.cli", "asci_logging.cli", "alerts.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asci", description="ASCI build-and-deploy pipeline")
    parser.add_argument("--version", action="version", version=f"asci {__version__}")
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="configuration file (default: $ASCI_CONFIG, else the embedded defaults)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="override logging.level from the configuration")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stack = sub.add_parser("stack", help="the real services ASCI needs: Docker, journald, registry, search engine")
    stack_sub = stack.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, func, text in (("up", cmd_stack_up, "start every part that is not answering"),
                             ("down", cmd_stack_down, "stop exactly what `up` started"),
                             ("status", cmd_stack_status, "show each part; exit 3 when one is down")):
        p = stack_sub.add_parser(name, help=text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)

    serve = sub.add_parser("serve", help="run the HTTP service in the foreground (the main job)")
    serve.add_argument("--host", help="listen address (default: server.host)")
    serve.add_argument("--port", type=int, help="listen port (default: server.port)")
    serve.set_defaults(func=cmd_serve)

    config = sub.add_parser("config", help="check or explain the configuration")
    config_sub = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    config_sub.add_parser("check", help="load and validate, then say ok").set_defaults(func=cmd_config_check)
    config_sub.add_parser("help", help="every setting with its default").set_defaults(func=cmd_config_help)

    for module in COMPONENT_COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.config_obj = load_config(args.config)
    except ConfigError as exc:
        print(f"asci: configuration error: {exc}", file=sys.stderr)
        return 2
    # The service logs to stdout; every other command keeps stdout for its result (tables, --json).
    jsonlog.configure(args.log_level or args.config_obj.logging.level,
                      stream=sys.stdout if args.command == "serve" else sys.stderr)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
