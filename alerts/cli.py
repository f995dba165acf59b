"""`asci alerts run | lint | test RULE`: ElastAlert 2 on ASCI's logs, paging in Slack.

Exit codes: 0 fine; 1 lint found a broken rule; 2 configuration or engine problem.
"""
from __future__ import annotations

from asci_core.errors import AsciError

import argparse
import datetime as dt
import json
import signal
import sys
import tempfile
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("alerts", help="ElastAlert 2 rules on the logs: Slack messages for on-call staff")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    run = sub.add_parser("run", help="run ElastAlert in the foreground (its JSON log lines on stderr; SIGTERM stops it)")
    run.set_defaults(func=cmd_run)

    lint = sub.add_parser("lint", help="load every rule with ElastAlert's own loader; one line per broken rule")
    lint.set_defaults(func=cmd_lint)

    test = sub.add_parser("test", help="run one rule over a time range and print what it would send (sends nothing)")
    test.add_argument("rule", help="rule name, e.g. brute-force-account")
    test.add_argument("--start", type=_when, help="ISO time (default: END - 1 hour)")
    test.add_argument("--end", type=_when, help="ISO time (default: now)")
    test.add_argument("--json", action="store_true", help="print the Slack payloads as JSON lines")
    test.set_defaults(func=cmd_test)


def _when(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time such as 2026-12-02T05:00:00Z: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _fail(message: str) -> int:
    print(f"asci alerts: {message}", file=sys.stderr)
    return 2


def cmd_lint(args: argparse.Namespace) -> int:
    from alerts.elastalert_driver import lint

    with tempfile.TemporaryDirectory(prefix="asci-alerts-lint-") as scratch:
        good, problems = lint(args.config_obj, Path(scratch))
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{len(good)} rules valid: {', '.join(good)}")
    return 0


def cmd_test(args: argparse.Namespace) -> int:
    from alerts.elastalert_driver import AlertsError, dry_run
    from alerts.preview import Capture, describe

    end = args.end or dt.datetime.now(dt.timezone.utc)
    start = args.start or end - dt.timedelta(hours=1)
    if start >= end:
        return _fail("--start must be before --end")
    with tempfile.TemporaryDirectory(prefix="asci-alerts-test-") as scratch, Capture() as capture:
        try:
            matches = dry_run(args.config_obj, args.rule, start, end, Path(scratch), capture.url)
        except AlertsError as exc:
            return _fail(str(exc))
        posts = list(capture.posts)
    for post in posts:
        print(json.dumps(post, ensure_ascii=False) if args.json else describe(post) + "\n")
    print(f"{args.rule}: {matches} match(es), {len(posts)} message(s) would be sent "
          f"({start.isoformat()} to {end.isoformat()})", file=sys.stderr)
    return 0


class _Stop(AsciError):
    """Raised by the signal handler to leave ElastAlert's blocking loop; never reaches the user."""


def cmd_run(args: argparse.Namespace) -> int:
    from alerts.elastalert_driver import AlertsError, alerter, prepare
    from asci_core.jsonlog import get_logger

    log = get_logger("alerts")
    settings = args.config_obj.alerts
    if not settings.enabled:
        log.info("alerts are disabled (alerts.enabled: false)")
        return 0
    if settings.slack_webhook_url is None:
        return _fail("alerts.slack_webhook_url is not set: nowhere to send alerts")
    try:
        workdir = prepare(args.config_obj)
        ea = alerter(workdir)
    except AlertsError as exc:
        return _fail(str(exc))

    def stop(signum: int, _frame) -> None:
        raise _Stop(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("alerts running", rules=[r["name"] for r in ea.rules], run_every_s=settings.run_every_seconds,
             writeback_index=settings.writeback_index)
    try:
        ea.start()
    except _Stop as why:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        ea.running = False
        # Let a rule pass in progress finish, so its end time and silences are recorded.
        ea.scheduler.shutdown(wait=True)
        log.info("alerts stopped", signal=str(why))
    except SystemExit as exc:
        # ElastAlert exits by itself only when the engine or its indices are gone.
        return _fail(f"ElastAlert stopped (exit {exc.code}); see its log lines above")
    return 0
