"""The `asci` command: one sub-command per component.

Every expected failure is an AsciError (asci_core.errors); `main` alone turns it
into one line on stderr and its exit code.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from asci_core import __version__, jsonlog
from asci_core.components import components
from asci_core.config import MOVED, ConfigError, describe, load_config
from asci_core.errors import EXIT_BROKEN_PIPE, EXIT_FAILED, EXIT_INTERRUPTED, AsciError

log = jsonlog.get_logger("config")


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
    from asci_core.server import serve

    import uvloop

    # uvloop: the webhook intake spends most of its time in the event loop (measured in bench/).
    uvloop.run(serve(args.config_obj, host=args.host, port=args.port))
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    print(f"{args.config_obj.source}: ok")
    return 0


def cmd_config_help(args: argparse.Namespace) -> int:
    for key, default, text in describe():
        print(f"{key}\n    {text} [default: {default}]")
    print("\nMoved settings (the old key still loads; `asci` logs a line asking to rename it):")
    for old, new in MOVED.items():
        print(f"{old}\n    now {new}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asci", description="ASCI build-and-deploy pipeline")
    parser.add_argument("--version", action="version", version=f"asci {__version__}")
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="configuration file (default: $ASCI_CONFIG, else the embedded defaults)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        help="override log.level from the configuration")
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

    # Each component adds its own sub-commands (asci_core.components); every handler receives the
    # parsed arguments with the loaded config in `args.config_obj`. A component may set the
    # `error_prefix` default on its parser ("asci registry") for its one-line errors.
    for component in components():
        if component.commands is not None:
            component.commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        moved: list[tuple[str, str]] = []
        args.config_obj = load_config(args.config, moved)
        # The service logs to stdout; every other command keeps stdout for its result (tables, --json).
        jsonlog.configure(args.log_level or args.config_obj.log.level,
                          stream=sys.stdout if args.command == "serve" else sys.stderr)
        for old, new in moved:
            log.warning("setting moved: rename it in the configuration", setting=old, new_setting=new,
                        config=args.config_obj.source)
        code = args.func(args)
        sys.stdout.flush()
        return code
    except AsciError as exc:
        # A configuration error concerns the whole file, whichever command read it.
        prefix = "asci" if isinstance(exc, ConfigError) else getattr(args, "error_prefix", "asci")
        print(f"{prefix}: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError:
        # The reader went away (`asci config help | head`): nothing left to say to it.
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:
        # The machine refused (a folder that cannot be made, a permission, a full disk): the
        # person can act on the one line; a traceback would only hide it.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"{getattr(args, 'error_prefix', 'asci')}: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; pointing it at /dev/null keeps that flush from failing.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
